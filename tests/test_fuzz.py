"""Fuzzing (Hypothesis) of what the SDK reads from a server and of what users pass (issue 9): only documented
errors come out — never KeyError, TypeError, RecursionError, OverflowError — and no wait beyond its cap.

Task bodies, batch answers and credits are fuzzed in test_models.py; here: error envelopes (any status, any
bytes, any headers), Retry-After values and the backoff they lead to, callback bodies as the receiver gets them,
and request validation.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

import evolink_async as evo
from evolink_async._converter import request_to_wire
from evolink_async._retry import backoff_delay, parse_retry_after
from evolink_async._transport import error_from_response

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
_bodies = st.one_of(
    st.binary(max_size=300),
    _json.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"error": _json}).map(lambda v: json.dumps(v).encode()),
    st.integers(1, 3000).map(lambda depth: b"[" * depth + b"]" * depth),  # deeper than the parser goes
)


@settings(max_examples=300, deadline=None)
@given(status=st.integers(100, 599), body=_bodies, retry_after=st.none() | st.text(max_size=40))
def test_any_error_answer_becomes_an_api_error_with_its_status(status: int, body: bytes, retry_after: Any) -> None:
    headers = {"content-type": "application/json"}
    if retry_after is not None:
        headers["retry-after"] = retry_after
    error = error_from_response(status, headers, body)
    assert isinstance(error, evo.APIError)
    assert error.status == status
    assert isinstance(str(error), str)
    if isinstance(error, evo.RateLimitError) and error.retry_after is not None:
        assert error.retry_after >= 0


@settings(max_examples=300, deadline=None)
@given(value=st.none() | st.text(max_size=60), attempt=st.integers(1, 60))
def test_retry_after_parses_or_is_ignored_and_no_backoff_exceeds_its_cap(value: Any, attempt: int) -> None:
    seconds = parse_retry_after(value)
    assert seconds is None or seconds >= 0
    policy = evo.RetryPolicy(max_backoff=8.0, max_retry_after=30.0)
    delay = backoff_delay(policy, attempt, seconds)
    assert 0 <= delay <= max(policy.max_backoff, policy.max_retry_after)


@settings(max_examples=300, deadline=None)
@given(body=_bodies)
def test_any_callback_body_gets_an_answer_and_never_an_exception(body: bytes) -> None:
    client = evo.AsyncClient("sk-fuzz-key-0123456789", base_url="http://127.0.0.1:9")
    status, answer = client.callbacks.handle(body)
    assert status in (202, 400, 503)
    assert isinstance(answer, dict)


_values = _json | st.builds(object) | st.lists(st.text(max_size=5), max_size=3).map(tuple)


@settings(max_examples=300, deadline=None)
@given(
    prompt=_values,
    fields=st.fixed_dictionaries(
        {},
        optional={name: _values for name in ("size", "quality", "model", "image_urls", "callback_url", "model_params")},
    ),
)
def test_request_validation_raises_only_validation_error(prompt: Any, fields: dict[str, Any]) -> None:
    request: evo.ImageRequest | None = None
    field = None
    try:
        request = evo.ImageRequest(prompt, **fields)
    except evo.ValidationError as exc:
        field = exc.field
    if request is None:
        assert field  # names the field at fault
    else:
        json.dumps(request_to_wire(request))  # what is sent can be written
