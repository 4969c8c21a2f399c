"""Request validation and lenient task parsing (no network: these pin the converter and models)."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import evolink_async as evo
from evolink_async._converter import batch_items, request_to_wire, structure_credits, structure_task


def test_request_defaults_go_on_the_wire_without_unset_fields() -> None:
    assert request_to_wire(evo.ImageRequest("a cat")) == {"model": "gemini-3-pro-image-preview", "prompt": "a cat"}


def test_request_extra_fields_and_model_params_pass_through() -> None:
    req = evo.ImageRequest(
        "a cat", size="16:9", quality="4K", model_params={"thinking_level": "high"}, extra={"seed": 7}
    )
    assert request_to_wire(req) == {
        "model": "gemini-3-pro-image-preview",
        "prompt": "a cat",
        "size": "16:9",
        "quality": "4K",
        "model_params": {"thinking_level": "high"},
        "seed": 7,
    }


@pytest.mark.parametrize(
    ("kwargs", "field", "fragment"),
    [
        ({"prompt": ""}, "prompt", "empty"),
        ({"prompt": "   "}, "prompt", "empty"),
        ({"prompt": "x" * 2001}, "prompt", "2001 characters"),
        ({"prompt": "x" * 1001, "model": "gemini-2.5-flash-image"}, "prompt", "at most 1000"),
        ({"prompt": "p", "size": "7:3"}, "size", "'7:3'"),
        ({"prompt": "p", "size": "1:4"}, "size", "'1:4'"),
        ({"prompt": "p", "quality": "8K"}, "quality", "'8K'"),
        ({"prompt": "p", "quality": "0.5K"}, "quality", "'0.5K'"),
        ({"prompt": "p", "image_urls": [f"https://x.test/{i}.png" for i in range(11)]}, "image_urls", "at most 10"),
        ({"prompt": "p", "image_urls": ["ftp://x.test/a.png"]}, "image_urls[0]", "http(s)"),
        ({"prompt": "p", "image_urls": ["https://x.test/a.png", "https://x.test/a.gif"]}, "image_urls[1]", ".gif"),
        ({"prompt": "p", "callback_url": "http://hooks.example.com/cb"}, "callback_url", "https"),
        ({"prompt": "p", "callback_url": "https://127.0.0.1/cb"}, "callback_url", "private or loopback"),
        ({"prompt": "p", "callback_url": "https://10.1.2.3/cb"}, "callback_url", "private or loopback"),
        ({"prompt": "p", "callback_url": "https://172.20.0.1/cb"}, "callback_url", "private or loopback"),
        ({"prompt": "p", "callback_url": "https://192.168.1.1/cb"}, "callback_url", "private or loopback"),
        ({"prompt": "p", "callback_url": "https://[::1]/cb"}, "callback_url", "private or loopback"),
        ({"prompt": "p", "callback_url": "https://localhost/cb"}, "callback_url", "loopback"),
        ({"prompt": "p", "callback_url": "https://h.example.com/" + "a" * 2048}, "callback_url", "2048"),
        ({"prompt": "p", "model": ""}, "model", "non-empty"),
        ({"prompt": "p", "extra": {"prompt": "other"}}, "extra['prompt']", "duplicates"),
    ],
)
def test_invalid_request_names_the_field(kwargs: dict[str, Any], field: str, fragment: str) -> None:
    with pytest.raises(evo.ValidationError) as info:
        evo.ImageRequest(**kwargs)
    assert info.value.field == field
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError)


def test_flash_model_accepts_its_extra_sizes_and_more_images() -> None:
    req = evo.ImageRequest(
        "p",
        model="gemini-3.1-flash-image-preview",
        size="1:8",
        quality="0.5K",
        image_urls=[f"https://x.test/{i}.webp" for i in range(14)],
    )
    assert len(req.image_urls) == 14


def test_unknown_model_is_not_validated() -> None:
    req = evo.ImageRequest("x" * 5000, model="doubao-seedream-9", size="weird", quality="8K")
    assert request_to_wire(req)["size"] == "weird"


def test_image_url_without_extension_is_allowed_and_string_is_not_split() -> None:
    assert evo.ImageRequest("p", image_urls="https://cdn.test/signed?id=1").image_urls == (
        "https://cdn.test/signed?id=1",
    )


def test_callback_dns_name_over_https_is_accepted() -> None:
    assert evo.ImageRequest("p", callback_url="https://hooks.example.com/cb").callback_url


def test_task_parses_documented_example() -> None:
    task = structure_task(
        {
            "created": 1757165031,
            "id": "task-unified-1757165031-uyujaw3d",
            "model": "gemini-3-pro-image-preview",
            "object": "image.generation.task",
            "progress": 0,
            "status": "pending",
            "task_info": {"can_cancel": True, "estimated_time": 45},
            "type": "image",
            "usage": {"billing_rule": "per_call", "credits_reserved": 1.6, "user_group": "default"},
        }
    )
    assert task.status is evo.TaskStatus.PENDING
    assert task.estimated_time == 45
    assert task.usage is not None
    assert task.usage.credits_reserved == 1.6
    assert task.created_at is not None
    assert task.created_at.year == 2025
    assert not task.is_final


def test_failed_task_with_integer_code_and_minimal_fields() -> None:
    task = structure_task({"id": "task-unified-1-a", "status": "failed", "error": {"code": 500, "message": "x"}})
    assert task.is_final
    assert task.error is not None
    assert task.error.code == "500"
    assert task.task_info is None
    assert task.usage is None


def test_failed_task_without_error_object() -> None:
    task = structure_task({"id": "task-unified-1-a", "status": "failed"})
    assert task.error is None
    err = evo.TaskFailedError(task)
    assert err.task_id == "task-unified-1-a"
    assert err.code is None


def test_unknown_status_is_kept_and_not_final() -> None:
    task = structure_task({"id": "task-unified-1-a", "status": "queued_upstream", "progress": 5})
    assert task.status is evo.TaskStatus.UNKNOWN
    assert task.raw_status == "queued_upstream"
    assert not task.is_final


def test_cancelled_is_final() -> None:
    assert structure_task({"id": "t", "status": "cancelled"}).is_final


def test_unknown_keys_are_kept_and_reachable() -> None:
    task = structure_task(
        {
            "id": "t",
            "status": "completed",
            "results": ["https://files.test/a.png"],
            "new_field": {"a": 1},
            "usage": {"credits_used": 1.6, "cost": {"credits": 1.6, "usd": 0.02, "eur": 0.01}, "tier": "gold"},
            "task_info": {"estimated_time": "45", "queue_position": 3},
        }
    )
    assert task.extra == {"new_field": {"a": 1}}
    assert task.usage is not None
    assert task.usage.extra == {"tier": "gold"}
    assert task.usage.cost is not None
    assert task.usage.cost.extra == {"eur": 0.01}
    assert task.task_info is not None
    assert task.task_info.estimated_time == 45.0
    assert task.task_info.extra == {"queue_position": 3}


def test_unreadable_optional_part_is_kept_raw_not_fatal() -> None:
    task = structure_task({"id": "t", "status": "processing", "usage": "n/a", "task_info": [1]})
    assert task.usage is None
    assert task.extra["usage"] == "n/a"
    assert task.extra["task_info"] == [1]


@pytest.mark.parametrize(
    "bad",
    [None, [], "text", {"status": "pending"}, {"id": 5, "status": "pending"}, {"id": "t"}, {"id": "t", "status": 3}],
)
def test_task_without_id_or_status_is_malformed(bad: Any) -> None:
    with pytest.raises(evo.MalformedResponseError):
        structure_task(bad)


def test_unreadable_results_raise_rather_than_vanish() -> None:
    with pytest.raises(evo.MalformedResponseError) as info:
        structure_task({"id": "t", "status": "completed", "results": [{"url": 1}]})
    assert info.value.task_id == "t"


def test_batch_answer_and_credits_parse() -> None:
    items = batch_items({"data": [{"id": "a", "status": "pending"}, {"id": "b", "status": "completed"}]})
    tasks = [structure_task(item) for item in items]
    assert [t.id for t in tasks] == ["a", "b"]
    credits = structure_credits(
        {
            "success": True,
            "data": {
                "user": {"remaining_credits": 1095.3996, "used_credits": 135.9048},
                "token": {"remaining_credits": 99416.4429, "used_credits": 583.5571, "unlimited_credits": False},
            },
        }
    )
    assert credits.remaining == 1095.3996
    assert credits.key_unlimited is False
    with pytest.raises(evo.MalformedResponseError):
        batch_items({"nope": 1})
    with pytest.raises(evo.MalformedResponseError):
        structure_credits([])


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=10,
)
_known_keys = st.sampled_from(
    ["progress", "model", "created", "object", "type", "task_info", "usage", "results", "error"]
)


@settings(max_examples=300, deadline=None)
@given(
    status=st.sampled_from(["pending", "processing", "completed", "failed", "cancelled", "weird"]),
    optional=st.dictionaries(_known_keys, _json, max_size=9),
    unknown=st.dictionaries(st.text(min_size=1, max_size=8).filter(lambda k: k not in {"id", "status"}), _json),
)
def test_any_shape_of_optional_fields_parses_or_raises_evolink_error(
    status: str, optional: dict[str, Any], unknown: dict[str, Any]
) -> None:
    data = {**unknown, **optional, "id": "task-unified-1-x", "status": status}
    try:
        task = structure_task(data)
    except evo.EvolinkError:
        return  # malformed, reported as ours: fine; a KeyError/TypeError would fail the test
    assert task.id == "task-unified-1-x"
    assert task.raw_status == status
    for key in unknown:
        if key not in {"progress", "model", "created", "object", "type", "task_info", "usage", "results", "error"}:
            assert key in task.extra


@settings(max_examples=200, deadline=None)
@given(data=_json)
def test_any_json_value_parses_or_raises_evolink_error(data: Any) -> None:
    for parse in (structure_task, batch_items, structure_credits):
        with contextlib.suppress(evo.EvolinkError):
            parse(data)


@settings(max_examples=100, deadline=None)
@given(
    task_info=st.fixed_dictionaries({}, optional={"can_cancel": _json, "estimated_time": _json, "x": _json}),
    usage=st.fixed_dictionaries({}, optional={"credits_reserved": _json, "cost": _json, "billing_rule": _json}),
)
def test_missing_optional_fields_never_crash(task_info: dict[str, Any], usage: dict[str, Any]) -> None:
    task = structure_task({"id": "t", "status": "processing", "task_info": task_info, "usage": usage})
    assert task.id == "t"


def test_non_finite_numbers_are_treated_as_absent_not_a_crash() -> None:
    task = structure_task(
        {
            "id": "t",
            "status": "processing",
            "progress": float("inf"),
            "created": 1e999,
            "task_info": {"estimated_time": "nan"},
        }
    )
    assert task.progress is None
    assert task.created is None
    assert task.task_info is not None
    assert task.task_info.estimated_time is None
