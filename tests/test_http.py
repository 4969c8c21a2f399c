"""The HTTP layer through the public client: error mapping, retries, timeouts, and idempotent creates.

Everything talks real HTTP over loopback to the simulator; the server's counters (``fake.stats``) are
the witness of what was actually sent.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from email.utils import formatdate
from typing import Any

import anyio
import attrs
import pytest
from conftest import FAST_POLL, FAST_RETRY, UNPACED, closed_port

import evolink_async as evo
from evolink_async._retry import backoff_delay, parse_retry_after
from evolink_async.testing import FakeEvolink, Fault, RequestRecord, TaskPlan

MakeClient = Callable[..., evo.AsyncClient]

CREATE_PATH = "/v1/images/generations"
KEY_RE = re.compile(r"[A-Za-z0-9._-]{16,96}")
QUICK = "a cat [duration:0.2]"


def _records(fake: FakeEvolink, method: str, path: str) -> list[RequestRecord]:
    return [r for r in fake.stats.requests_seen if r.method == method and r.path == path]


def _create_keys(fake: FakeEvolink) -> list[str | None]:
    return [r.headers.get("Idempotency-Key") for r in _records(fake, "POST", CREATE_PATH)]


def _client(base_url: str, api_key: str, **kwargs: Any) -> evo.AsyncClient:
    options: dict[str, Any] = {"retry": FAST_RETRY, "poll": FAST_POLL, "limits": UNPACED}
    options.update(kwargs)
    return evo.AsyncClient(api_key, base_url=base_url, **options)


# -- HTTP errors map to the error tree ------------------------------------------------------------------


async def test_400_invalid_task_id_raises_bad_request_with_param_task_id_without_retry(
    fake: FakeEvolink, client: evo.AsyncClient
) -> None:
    with pytest.raises(evo.BadRequestError) as info:
        await client.get_task("abc")
    err = info.value
    assert err.status == 400
    assert err.code == "invalid_task_id"
    assert err.param == "task_id"
    assert err.task_id == "abc"
    assert fake.stats.read_requests == 1


async def test_400_from_server_validation_on_create_is_bad_request_not_retried_nothing_created(
    fake: FakeEvolink, client: evo.AsyncClient
) -> None:
    # The SDK does not check sizes for gemini-2.5-flash-image; the server does, so the 400 comes from it.
    with pytest.raises(evo.BadRequestError) as info:
        await client.submit("a cat", model="gemini-2.5-flash-image", size="7:3")
    err = info.value
    assert err.status == 400
    assert err.param == "size"
    assert err.idempotency_key is not None
    assert fake.stats.create_requests == 1
    assert fake.stats.creates == 0


async def test_401_wrong_key_raises_authentication_error_without_retry(fake: FakeEvolink) -> None:
    async with _client(fake.base_url, "sk-evo-not-the-right-key") as client:
        with pytest.raises(evo.AuthenticationError) as info:
            await client.credits()
    assert info.value.status == 401
    assert info.value.code == "unauthorized"
    assert fake.stats.requests == 1
    assert fake.stats.auth_failures == 1


async def test_402_no_credits_raises_insufficient_credits_with_code_and_no_retry(
    fake: FakeEvolink, client: evo.AsyncClient
) -> None:
    fake.credits = 0
    with pytest.raises(evo.InsufficientCreditsError) as info:
        await client.submit(QUICK)
    assert info.value.status == 402
    assert info.value.code == "insufficient_quota"
    assert fake.stats.create_requests == 1
    assert fake.stats.creates == 0


@pytest.mark.parametrize(
    ("status", "cls"),
    [(403, evo.PermissionDeniedError), (409, evo.ConflictError), (413, evo.BadRequestError)],
)
async def test_4xx_on_create_maps_to_its_class_carries_the_key_and_is_not_retried(
    fake: FakeEvolink, client: evo.AsyncClient, status: int, cls: type[evo.APIError]
) -> None:
    fake.inject(Fault(kind="status", status=status, route="create", times=5))
    with pytest.raises(cls) as info:
        await client.submit(QUICK)
    err = info.value
    assert err.status == status
    assert not isinstance(err, evo.SubmissionUnknownError)
    assert fake.stats.create_requests == 1
    assert fake.stats.creates == 0
    assert err.idempotency_key is not None
    assert _create_keys(fake) == [err.idempotency_key]


async def test_403_on_read_is_permission_denied_with_task_id_and_not_retried(
    fake: FakeEvolink, client: evo.AsyncClient
) -> None:
    task = await client.submit(QUICK)
    fake.inject(Fault(kind="status", status=403, route="read", times=5))
    with pytest.raises(evo.PermissionDeniedError) as info:
        await client.get_task(task.id)
    assert info.value.task_id == task.id
    assert fake.stats.read_requests == 1


async def test_404_unknown_task_raises_not_found_with_task_id(fake: FakeEvolink, client: evo.AsyncClient) -> None:
    missing = "task-unified-1757165031-nosuchid"
    with pytest.raises(evo.NotFoundError) as info:
        await client.get_task(missing)
    err = info.value
    assert err.status == 404
    assert err.code == "task_not_found"
    assert err.task_id == missing
    assert missing in str(err)
    assert fake.stats.read_requests == 1


async def test_429_exhausting_retries_raises_rate_limit_error_with_retry_after(
    fake: FakeEvolink, client: evo.AsyncClient
) -> None:
    task = await client.submit(QUICK)
    fake.inject(Fault(kind="status", status=429, route="read", retry_after="0.01", times=10))
    with pytest.raises(evo.RateLimitError) as info:
        await client.get_task(task.id)
    err = info.value
    assert err.status == 429
    assert err.retry_after == pytest.approx(0.01)
    assert err.code == "rate_limit_exceeded"
    assert fake.stats.read_requests == FAST_RETRY.max_attempts
    assert fake.stats.rate_limited == FAST_RETRY.max_attempts


@pytest.mark.parametrize(("status", "code"), [(500, "internal_error"), (503, "service_unavailable")])
async def test_5xx_json_exhausting_retries_raises_server_error(
    fake: FakeEvolink, client: evo.AsyncClient, status: int, code: str
) -> None:
    task = await client.submit(QUICK)
    fake.inject(Fault(kind="status", status=status, route="read", times=10))
    with pytest.raises(evo.ServerError) as info:
        await client.get_task(task.id)
    err = info.value
    assert err.status == status
    assert err.code == code
    assert err.task_id == task.id
    assert fake.stats.read_requests == FAST_RETRY.max_attempts


async def test_502_html_page_becomes_clean_server_error_without_html_in_message(
    fake: FakeEvolink, client: evo.AsyncClient
) -> None:
    task = await client.submit(QUICK)
    fake.inject(Fault(kind="html", route="read", times=10))
    with pytest.raises(evo.ServerError) as info:
        await client.get_task(task.id)
    err = info.value
    text = str(err)
    assert err.status == 502
    assert err.code is None
    assert "non-JSON" in text
    assert "text/html" in text
    assert "<" not in text
    assert "nginx" not in text
    assert "<html" not in repr(err)
    assert fake.stats.read_requests == FAST_RETRY.max_attempts


@pytest.mark.parametrize(
    ("style", "not_found_code", "rate_code", "rate_type"),
    [("string", "task_not_found", "rate_limit_exceeded", "rate_limit_error"), ("int", 404, 429, None)],
)
async def test_both_error_envelope_styles_are_read(
    make_client: MakeClient, style: Any, not_found_code: str | int, rate_code: str | int, rate_type: str | None
) -> None:
    async with FakeEvolink(error_style=style) as fake, make_client(fake) as client:
        with pytest.raises(evo.NotFoundError) as nf:
            await client.get_task("task-unified-1757165031-nosuchid")
        fake.inject(Fault(kind="status", status=429, route="credits", times=10))
        with pytest.raises(evo.RateLimitError) as rl:
            await client.credits()
    assert nf.value.code == not_found_code
    assert nf.value.message  # a real message, not the generic fallback
    assert "server answered" not in nf.value.message
    assert rl.value.code == rate_code
    assert type(rl.value.code) is type(rate_code)
    assert rl.value.type == rate_type
    assert rl.value.message == "Too Many Requests"


async def test_api_errors_carry_the_request_id_from_x_request_id(fake: FakeEvolink, client: evo.AsyncClient) -> None:
    with pytest.raises(evo.NotFoundError) as info:
        await client.get_task("task-unified-1757165031-nosuchid")
    request_id = info.value.request_id
    assert request_id is not None
    assert request_id.startswith("req-")
    assert f"request_id={request_id}" in str(info.value)


# -- retries of reads -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        Fault(kind="status", status=500, route="read", times=2),
        Fault(kind="status", status=503, route="read", times=2),
        Fault(kind="html", route="read", times=2),
        Fault(kind="status", status=429, route="read", times=2),
        # aiohttp itself re-sends a GET once on a dropped keep-alive connection; two drops reach us either way.
        Fault(kind="drop", route="read", times=2),
        Fault(kind="malformed", route="read", times=2),
    ],
    ids=["500", "503", "html502", "429", "drop", "malformed"],
)
async def test_read_is_retried_through_transient_faults_then_succeeds(
    fake: FakeEvolink, client: evo.AsyncClient, fault: Fault
) -> None:
    task = await client.submit(QUICK)
    fake.inject(fault)
    got = await client.get_task(task.id)
    assert got.id == task.id
    assert fake.stats.faults_applied == 2
    assert fake.stats.read_requests == 3
    assert fake.stats.reads[task.id] == 1  # only the last request was answered


@pytest.mark.parametrize("max_attempts", [1, 2, 3])
async def test_max_attempts_bounds_the_requests_sent(
    fake: FakeEvolink, make_client: MakeClient, max_attempts: int
) -> None:
    fake.inject(Fault(kind="status", status=503, route="credits", times=10))
    async with make_client(fake, retry=attrs.evolve(FAST_RETRY, max_attempts=max_attempts)) as client:
        with pytest.raises(evo.ServerError):
            await client.credits()
    assert fake.stats.credits_requests == max_attempts


async def test_retry_after_seconds_is_honoured_before_the_retry(fake: FakeEvolink, client: evo.AsyncClient) -> None:
    fake.inject(Fault(kind="status", status=429, route="credits", retry_after="0.5"))
    await client.credits()
    first, second = _records(fake, "GET", "/v1/credits")
    # A lower bound only: a slow machine makes the gap longer, never shorter.
    assert second.time - first.time >= 0.45


async def test_retry_after_http_date_is_parsed_and_honoured(fake: FakeEvolink, client: evo.AsyncClient) -> None:
    # HTTP dates have whole seconds: "now + 2 s" truncated is still more than 1 s away.
    fake.inject(Fault(kind="status", status=429, route="credits", retry_after=formatdate(time.time() + 2, usegmt=True)))
    await client.credits()
    first, second = _records(fake, "GET", "/v1/credits")
    assert second.time - first.time >= 0.8


async def test_retry_after_beyond_max_retry_after_is_capped(fake: FakeEvolink, make_client: MakeClient) -> None:
    # A server asking for an hour must not stall the client (or its rate limiter) for an hour.
    fake.inject(Fault(kind="status", status=429, route="credits", retry_after="3600"))
    async with make_client(fake, retry=attrs.evolve(FAST_RETRY, max_retry_after=0.1)) as client:
        with anyio.fail_after(10):
            await client.credits()
        with anyio.fail_after(10):
            await client.credits()  # later requests are not held back by the 3600 s hint either
    assert fake.stats.credits_requests == 3


# -- unit: Retry-After parsing and the backoff schedule ---------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("3", 3.0),
        (" 1.5 ", 1.5),
        ("0", 0.0),
        ("-5", 0.0),
        ("", None),
        ("   ", None),
        (None, None),
        ("soon", None),
        ("nan", None),
    ],
)
def test_parse_retry_after_delta_seconds(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_parse_retry_after_http_date_relative_to_now() -> None:
    when = 1445412480.0  # Wed, 21 Oct 2015 07:28:00 GMT
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=when - 10) == pytest.approx(10.0)
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=when + 10) == 0.0  # in the past
    assert parse_retry_after("Wed, 32 Foo 2015 99:99:99 GMT", now=when) is None


def test_backoff_delay_uses_retry_after_capped_by_max_retry_after() -> None:
    policy = evo.RetryPolicy(max_retry_after=5.0)
    assert backoff_delay(policy, 1, 2.0) == 2.0
    assert backoff_delay(policy, 1, 0.0) == 0.0
    assert backoff_delay(policy, 3, 120.0) == 5.0
    assert backoff_delay(policy, 1, float("inf")) == 5.0


def test_backoff_delay_grows_exponentially_within_jitter_bounds_and_caps() -> None:
    policy = evo.RetryPolicy(initial_backoff=0.5, multiplier=2.0, max_backoff=3.0)
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 3.0), (10, 3.0)]:
        delays = [backoff_delay(policy, attempt) for _ in range(200)]
        assert min(delays) >= ceiling / 2
        assert max(delays) <= ceiling
        assert len(set(delays)) > 1  # jittered, so many clients do not retry in lockstep


# -- creates and idempotency --------------------------------------------------------------------------------


async def test_every_create_carries_a_fresh_valid_idempotency_key(fake: FakeEvolink, client: evo.AsyncClient) -> None:
    tasks = [await client.submit(f"cat {i} [duration:0.2]") for i in range(3)]
    keys = _create_keys(fake)
    assert len(keys) == 3
    assert all(k is not None and KEY_RE.fullmatch(k) for k in keys)
    assert len(set(keys)) == 3
    assert fake.stats.creates_without_key == 0
    assert [fake.tasks[t.id].idempotency_key for t in tasks] == keys


async def test_create_dropped_after_creation_is_retried_with_same_key_and_replayed_not_recharged(
    fake: FakeEvolink, client: evo.AsyncClient
) -> None:
    before = fake.credits
    fake.inject(Fault(kind="drop_after_create", route="create"))
    task = await client.submit(QUICK)
    assert fake.stats.create_requests == 2
    assert fake.stats.creates == 1
    assert fake.stats.replays == 1
    assert list(fake.tasks) == [task.id]
    keys = _create_keys(fake)
    assert keys[0] == keys[1]
    assert fake.credits == pytest.approx(before - fake.tasks[task.id].cost)


@pytest.mark.parametrize(
    "fault",
    [
        Fault(kind="status", status=500, route="create"),
        Fault(kind="status", status=503, route="create"),
        Fault(kind="html", route="create"),
        Fault(kind="malformed", route="create"),
        Fault(kind="drop", route="create"),
    ],
    ids=["500", "503", "html502", "malformed", "drop"],
)
async def test_create_failing_before_creation_is_retried_with_same_key_and_creates_once(
    fake: FakeEvolink, client: evo.AsyncClient, fault: Fault
) -> None:
    fake.inject(fault)
    task = await client.submit(QUICK)
    assert fake.stats.create_requests == 2
    assert fake.stats.creates == 1
    assert fake.stats.replays == 0
    assert list(fake.tasks) == [task.id]
    keys = _create_keys(fake)
    assert keys[0] is not None
    assert keys[0] == keys[1]


async def test_slow_create_beyond_request_timeout_then_retry_yields_exactly_one_task(
    fake: FakeEvolink, make_client: MakeClient
) -> None:
    before = fake.credits
    fake.inject(Fault(kind="slow", route="create", delay=0.6))
    async with make_client(fake, timeouts=evo.Timeouts(request=0.3)) as client:
        task = await client.submit(QUICK)
        assert fake.stats.create_requests == 2
        assert fake.stats.creates == 1
        # Let the abandoned slow attempt run to its end at the server: it must not add a task.
        await anyio.sleep(0.6)
    assert fake.stats.creates == 1
    assert list(fake.tasks) == [task.id]
    assert len(set(_create_keys(fake))) == 1
    assert fake.credits == pytest.approx(before - fake.tasks[task.id].cost)


async def test_create_outcome_unknown_raises_submission_unknown_and_resubmit_returns_original(
    fake: FakeEvolink, client: evo.AsyncClient
) -> None:
    before = fake.credits
    fake.inject(Fault(kind="drop_after_create", route="create", times=FAST_RETRY.max_attempts))
    with pytest.raises(evo.SubmissionUnknownError) as info:
        await client.submit(QUICK)
    err = info.value
    assert fake.stats.create_requests == FAST_RETRY.max_attempts
    assert fake.stats.creates == 1
    key = err.idempotency_key
    assert key is not None
    assert set(_create_keys(fake)) == {key}
    assert key in str(err)
    (created,) = fake.tasks

    task = await client.submit(QUICK, idempotency_key=err.idempotency_key)
    assert task.id == created
    assert fake.stats.creates == 1
    assert fake.stats.replays == FAST_RETRY.max_attempts
    assert fake.credits == pytest.approx(before - fake.tasks[created].cost)


async def test_create_dropped_then_rate_limited_stays_submission_unknown(
    fake: FakeEvolink, client: evo.AsyncClient
) -> None:
    # The first attempt may have created the task; later 429 refusals do not make that certain again.
    fake.inject(Fault(kind="drop_after_create", route="create"))
    fake.inject(Fault(kind="status", status=429, route="create", retry_after="0.01", times=FAST_RETRY.max_attempts - 1))
    with pytest.raises(evo.SubmissionUnknownError) as info:
        await client.submit(QUICK)
    assert fake.stats.creates == 1
    assert fake.stats.create_requests == FAST_RETRY.max_attempts
    task = await client.submit(QUICK, idempotency_key=info.value.idempotency_key)
    assert list(fake.tasks) == [task.id]


async def test_create_rate_limited_is_retried_without_duplicates(fake: FakeEvolink, client: evo.AsyncClient) -> None:
    fake.inject(Fault(kind="status", status=429, route="create", retry_after="0.01", times=2))
    task = await client.submit(QUICK)
    assert fake.stats.create_requests == 3
    assert fake.stats.creates == 1
    assert fake.stats.replays == 0
    assert list(fake.tasks) == [task.id]
    assert len(set(_create_keys(fake))) == 1


async def test_create_always_rate_limited_raises_rate_limit_error_not_submission_unknown(
    fake: FakeEvolink, client: evo.AsyncClient
) -> None:
    fake.inject(Fault(kind="status", status=429, route="create", retry_after="0.01", times=10))
    with pytest.raises(evo.RateLimitError) as info:
        await client.submit(QUICK)
    assert not isinstance(info.value, evo.SubmissionUnknownError)
    assert info.value.idempotency_key == _create_keys(fake)[0]
    assert fake.stats.creates == 0


async def test_caller_supplied_idempotency_key_is_sent_verbatim(fake: FakeEvolink, client: evo.AsyncClient) -> None:
    key = "order-42.retry_A-0123456789"
    task = await client.submit(QUICK, idempotency_key=key)
    assert _create_keys(fake) == [key]
    assert fake.tasks[task.id].idempotency_key == key
    again = await client.submit(QUICK, idempotency_key=key)
    assert again.id == task.id
    assert fake.stats.creates == 1


@pytest.mark.parametrize(
    "key",
    ["too-short", "x" * 97, "has spaces in it 0123", "slash/not/allowed/0123", "ключ-0123456789abcdef", ""],
    ids=["short", "long", "space", "slash", "non-ascii", "empty"],
)
async def test_invalid_idempotency_key_raises_validation_error_before_any_request(
    fake: FakeEvolink, client: evo.AsyncClient, key: str
) -> None:
    with pytest.raises(evo.ValidationError) as info:
        await client.submit(QUICK, idempotency_key=key)
    assert info.value.field == "idempotency_key"
    assert fake.stats.requests == 0


async def test_connection_refused_on_create_is_connection_error_not_submission_unknown() -> None:
    async with _client(f"http://127.0.0.1:{closed_port()}", "sk-evo-simulator-key") as client:
        with pytest.raises(evo.APIConnectionError) as info:
            await client.submit(QUICK)
    err = info.value
    assert not isinstance(err, evo.SubmissionUnknownError)
    assert not isinstance(err, evo.APITimeoutError)
    assert err.idempotency_key is not None
    assert "cannot connect" in str(err)


async def test_connection_refused_on_read_is_connection_error_with_task_id() -> None:
    task_id = "task-unified-1757165031-abcdefgh"
    async with _client(f"http://127.0.0.1:{closed_port()}", "sk-evo-simulator-key") as client:
        with pytest.raises(evo.APIConnectionError) as info:
            await client.get_task(task_id)
    assert info.value.task_id == task_id


# -- timeouts ----------------------------------------------------------------------------------------------


async def test_slow_read_beyond_request_timeout_raises_api_timeout_after_retries(
    fake: FakeEvolink, make_client: MakeClient
) -> None:
    fake.inject(Fault(kind="slow", route="read", delay=1.0, times=10))
    retry = attrs.evolve(FAST_RETRY, max_attempts=2)
    async with make_client(fake, timeouts=evo.Timeouts(request=0.3), retry=retry) as client:
        task = await client.submit(QUICK)
        with pytest.raises(evo.APITimeoutError) as info:
            await client.get_task(task.id)
    err = info.value
    assert isinstance(err, TimeoutError)
    assert isinstance(err, evo.APIConnectionError)
    assert err.task_id == task.id
    assert fake.stats.read_requests == 2


async def test_create_timing_out_on_every_attempt_is_submission_unknown_and_creates_once(
    fake: FakeEvolink, make_client: MakeClient
) -> None:
    fake.inject(Fault(kind="slow", route="create", delay=0.6, times=2))
    retry = attrs.evolve(FAST_RETRY, max_attempts=2)
    async with make_client(fake, timeouts=evo.Timeouts(request=0.2), retry=retry) as client:
        with pytest.raises(evo.SubmissionUnknownError) as info:
            await client.submit(QUICK)
        assert isinstance(info.value.__cause__, evo.APITimeoutError)
        # Let both abandoned attempts run to their end at the server before resubmitting.
        await anyio.sleep(0.6)
        task = await client.submit(QUICK, idempotency_key=info.value.idempotency_key)
    assert fake.stats.creates == 1
    assert list(fake.tasks) == [task.id]


# -- randomized stress: faults everywhere, never a duplicate task --------------------------------------------


def _random_fault(rng: random.Random, read_route: Any) -> Fault:
    route = rng.choice(["create", "create", "create", read_route])
    makers: list[Callable[[], Fault]] = [
        lambda: Fault(kind="drop_after_create" if route == "create" else "drop", route=route),
        lambda: Fault(kind="status", status=500, route=route),
        lambda: Fault(kind="status", status=429, route=route, retry_after="0.02"),
        lambda: Fault(kind="malformed", route=route),
        lambda: Fault(kind="slow", route=route, delay=0.5),
        lambda: Fault(kind="drop", route=route),
        lambda: Fault(kind="html", route=route),
    ]
    return rng.choice(makers)()


async def test_stress_random_faults_every_input_yields_exactly_one_task(make_client: MakeClient) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    n = 30
    prompts = [f"input {i}" for i in range(n)]
    outcomes: dict[int, evo.Task | evo.EvolinkError] = {}

    # Status reads go through POST /v1/tasks/batch, or per-task GETs when the batch endpoint is absent.
    batch = rng.random() < 0.5
    options: dict[str, Any] = {
        "timeouts": evo.Timeouts(request=0.3, poll=0.3),
        "retry": attrs.evolve(FAST_RETRY, max_attempts=3),
        "poll": attrs.evolve(FAST_POLL, batch=batch, batch_interval=0.1, max_interval=0.2),
    }

    async with FakeEvolink(plan=lambda body: TaskPlan(duration=0.2), batch_endpoint=batch) as fake:
        for _ in range(60):
            fake.inject(_random_fault(rng, "batch" if batch else "read"))
        async with make_client(fake, **options) as client:

            async def one(i: int) -> None:
                try:
                    outcomes[i] = await client.generate(prompts[i], timeout=15)
                except evo.EvolinkError as exc:
                    outcomes[i] = exc

            with anyio.fail_after(25):
                async with anyio.create_task_group() as tg:
                    for i in range(n):
                        tg.start_soon(one, i)

                # Recover every failed input the documented way: by task id, or by resubmitting with its key.
                fake.clear_faults()
                final: dict[int, str] = {}
                for i, outcome in outcomes.items():
                    if isinstance(outcome, evo.Task):
                        assert outcome.status is evo.TaskStatus.COMPLETED, f"seed={seed}"
                        assert outcome.results, f"seed={seed}"
                        final[i] = outcome.id
                    elif outcome.task_id is not None:
                        final[i] = (await client.wait(outcome.task_id)).id
                    else:
                        assert outcome.idempotency_key is not None, f"seed={seed}: {outcome!r}"
                        task = await client.submit(prompts[i], idempotency_key=outcome.idempotency_key)
                        final[i] = task.id

        assert len(outcomes) == n
        assert fake.stats.creates == n, f"seed={seed}"
        assert fake.stats.creates_without_key == 0
        assert len(set(final.values())) == n, f"seed={seed}"
        assert sorted(fake.tasks[final[i]].prompt for i in range(n)) == sorted(prompts), f"seed={seed}"
        assert fake.stats.faults_applied > 0
