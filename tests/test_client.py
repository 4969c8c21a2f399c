"""The public AsyncClient against the simulator over loopback: results, errors, validation, lifecycle,
timeouts and cancellation. The simulator's counters are the server's view of what the client did."""

from __future__ import annotations

import gc
import logging
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest
from conftest import until

import evolink_async as evo
from evolink_async.testing import FakeEvolink, Fault

MakeClient = Callable[..., evo.AsyncClient]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
QUICK = "[duration:0.2] a cat on grass"
UNKNOWN_ID = "task-unified-1-zzzzzzzz"

# EvoLink's table of task error codes (evolink-api.md §3) and its "retry by resubmitting?" column:
# yes / maybe -> retryable; no / "user's call" -> not.
DOC_ERROR_CODES = [
    ("content_policy_violation", False),
    ("invalid_parameters", False),
    ("image_processing_error", False),
    ("image_dimension_mismatch", False),
    ("request_cancelled", False),
    ("generation_failed_no_content", True),
    ("service_error", True),
    ("generation_timeout", True),
    ("resource_exhausted", True),
    ("quota_exceeded", True),
    ("service_unavailable", True),
    ("resource_not_found", False),
    ("unknown_error", True),
]


def only_task_id(fake: FakeEvolink) -> str:
    (task_id,) = fake.tasks
    return task_id


# -- results -------------------------------------------------------------------------------------------


async def test_generate_returns_completed_task_whose_result_urls_serve_pngs(
    fake: FakeEvolink, client: evo.AsyncClient
) -> None:
    task = await client.generate(QUICK, size="16:9")
    assert task.status is evo.TaskStatus.COMPLETED
    assert task.is_final
    assert task.id == only_task_id(fake)
    assert len(task.results) == 1
    async with aiohttp.ClientSession() as plain, plain.get(task.results[0]) as resp:
        assert resp.status == 200
        body = await resp.read()
    assert body.startswith(PNG_SIGNATURE)


async def test_submit_then_get_task_then_wait_reaches_completed(fake: FakeEvolink, client: evo.AsyncClient) -> None:
    submitted = await client.submit(QUICK)
    assert submitted.status is evo.TaskStatus.PENDING
    assert submitted.id in fake.tasks
    assert submitted.estimated_time == 1

    read = await client.get_task(submitted.id)
    assert read.id == submitted.id
    assert fake.stats.read_requests == 1

    final = await client.wait(submitted)
    assert final.id == submitted.id
    assert final.status is evo.TaskStatus.COMPLETED
    assert final.results
    assert fake.stats.creates == 1


async def test_wait_accepts_a_bare_task_id(fake: FakeEvolink, client: evo.AsyncClient) -> None:
    task_id = (await client.submit(QUICK)).id
    final = await client.wait(task_id)
    assert final.id == task_id
    assert final.status is evo.TaskStatus.COMPLETED


async def test_credits_reflect_simulator_balance_and_drop_by_the_tasks_charge(
    fake: FakeEvolink, client: evo.AsyncClient
) -> None:
    before = await client.credits()
    assert before.remaining == pytest.approx(fake.credits)
    assert before.remaining == pytest.approx(1000.0)
    assert before.remaining is not None

    task = await client.generate(QUICK, quality="4K")
    after = await client.credits()
    charge = fake.tasks[task.id].cost
    assert charge > 0
    assert after.remaining == pytest.approx(before.remaining - charge)
    assert after.used == pytest.approx((before.used or 0.0) + charge)
    assert after.remaining == pytest.approx(fake.credits)


async def test_credits_are_refunded_after_a_failed_task(fake: FakeEvolink, client: evo.AsyncClient) -> None:
    before = await client.credits()
    with pytest.raises(evo.TaskFailedError):
        await client.generate("[fail:service_error] [duration:0.1]")
    after = await client.credits()
    assert after.remaining == pytest.approx(before.remaining)


# -- on_update -------------------------------------------------------------------------------------


async def test_on_update_sync_callback_sees_rising_progress_until_completed(client: evo.AsyncClient) -> None:
    seen: list[evo.Task] = []
    task = await client.generate("[duration:0.5] progress", on_update=seen.append)
    assert all(t.progress is not None for t in seen)
    progress = [t.progress or 0 for t in seen]
    assert len(seen) >= 2
    assert progress[0] == 0
    assert progress[-1] == 100
    assert progress == sorted(progress)
    assert seen[-1] == task
    # Each call reports a new state, never the same one twice.
    states = [(t.raw_status, t.progress) for t in seen]
    assert len(states) == len(set(states))


async def test_on_update_async_callback_is_awaited_for_each_state(client: evo.AsyncClient) -> None:
    seen: list[int] = []

    async def record(task: evo.Task) -> None:
        await anyio.lowlevel.checkpoint()
        assert task.progress is not None
        seen.append(task.progress)

    task = await client.generate("[duration:0.3] async progress", on_update=record)
    assert task.status is evo.TaskStatus.COMPLETED
    assert seen[0] == 0
    assert seen[-1] == 100
    assert seen == sorted(seen)


async def test_on_update_exception_propagates_with_task_id_note_and_frees_the_slot(
    fake: FakeEvolink, client: evo.AsyncClient
) -> None:
    class Boom(Exception):
        pass

    def explode(task: evo.Task) -> None:
        raise Boom("callback failed")

    with pytest.raises(Boom) as info:
        await client.generate(QUICK, on_update=explode)
    task_id = only_task_id(fake)
    assert f"evolink task_id={task_id}" in getattr(info.value, "__notes__", [])
    assert client.in_flight == 0
    assert client.waiting == 0


# -- task failures ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "retryable"), DOC_ERROR_CODES)
async def test_each_documented_error_code_raises_task_failed_error_with_doc_retryability(
    fake: FakeEvolink, client: evo.AsyncClient, code: str, retryable: bool
) -> None:
    with pytest.raises(evo.TaskFailedError) as info:
        await client.generate(f"[fail:{code}] [duration:0.1]")
    err = info.value
    assert type(err) is evo.TaskFailedError
    assert err.code == code
    assert err.retryable is retryable
    assert err.task_id == only_task_id(fake)
    assert err.task.id == err.task_id
    assert err.task.status is evo.TaskStatus.FAILED
    assert err.task.error is not None
    assert err.task.error.code == code
    assert err.task_id in str(err)
    assert fake.stats.creates == 1  # a failed task is an answer: never resubmitted silently


async def test_error_code_not_in_the_doc_table_is_kept_and_not_retryable(
    fake: FakeEvolink, client: evo.AsyncClient
) -> None:
    with pytest.raises(evo.TaskFailedError) as info:
        await client.generate("[fail:brand_new_failure] [duration:0.1]")
    assert info.value.code == "brand_new_failure"
    assert info.value.retryable is False
    assert info.value.task_id == only_task_id(fake)


async def test_failed_task_without_error_object_raises_with_code_none(
    fake: FakeEvolink, client: evo.AsyncClient
) -> None:
    with pytest.raises(evo.TaskFailedError) as info:
        await client.generate("[fail] [noerror] [duration:0.1]")
    err = info.value
    assert err.code is None
    assert err.task.error is None
    assert err.task.status is evo.TaskStatus.FAILED
    assert err.task_id == only_task_id(fake)
    assert err.retryable is False


async def test_cancelled_task_raises_task_cancelled_error_instead_of_waiting_for_the_timeout(
    fake: FakeEvolink, client: evo.AsyncClient
) -> None:
    # Were `cancelled` not final, this would end in WaitTimeoutError after 20 s.
    with pytest.raises(evo.TaskCancelledError) as info:
        await client.generate("[cancel] [duration:0.1]", timeout=20)
    err = info.value
    assert isinstance(err, evo.TaskFailedError)
    assert err.code == "request_cancelled"
    assert err.task.status is evo.TaskStatus.CANCELLED
    assert err.task_id == only_task_id(fake)
    assert client.in_flight == 0


@pytest.mark.parametrize(
    ("prompt", "status"),
    [
        ("[fail:service_error] [duration:0.1]", evo.TaskStatus.FAILED),
        ("[cancel] [duration:0.1]", evo.TaskStatus.CANCELLED),
    ],
)
async def test_wait_without_raise_on_failure_returns_the_final_task(
    client: evo.AsyncClient, prompt: str, status: evo.TaskStatus
) -> None:
    submitted = await client.submit(prompt)
    final = await client.wait(submitted, raise_on_failure=False)
    assert final.id == submitted.id
    assert final.status is status
    assert final.error is not None


async def test_unknown_status_is_kept_and_not_final_until_the_task_completes(client: evo.AsyncClient) -> None:
    submitted = await client.submit("[status:queued_upstream] [duration:0.8]")
    assert submitted.status is evo.TaskStatus.UNKNOWN
    assert submitted.raw_status == "queued_upstream"
    assert not submitted.is_final
    running = await client.get_task(submitted.id)
    assert running.status is evo.TaskStatus.UNKNOWN
    assert running.raw_status == "queued_upstream"

    seen: list[evo.Task] = []
    final = await client.wait(submitted, on_update=seen.append)
    assert final.status is evo.TaskStatus.COMPLETED
    assert final.results
    unknown = [t for t in seen if t.status is evo.TaskStatus.UNKNOWN]
    assert unknown
    assert {t.raw_status for t in unknown} == {"queued_upstream"}


async def test_minimal_task_objects_parse_and_complete(client: evo.AsyncClient) -> None:
    task = await client.generate("[minimal] [duration:0.2]")
    assert task.status is evo.TaskStatus.COMPLETED
    assert task.results
    # The final read carried only id, status, progress and results.
    assert task.model is None
    assert task.task_info is None
    assert task.usage is None


# -- validation ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"size": "7:3"}, "size"),
        ({"quality": "8K"}, "quality"),
        ({"prompt": "x" * 2001}, "prompt"),
        ({"callback_url": "http://hooks.example.com/cb"}, "callback_url"),
        ({"callback_url": "https://192.168.1.10/cb"}, "callback_url"),
    ],
)
@pytest.mark.parametrize("method", ["submit", "generate"])
async def test_invalid_request_raises_validation_error_naming_the_field_before_any_request(
    fake: FakeEvolink, client: evo.AsyncClient, fields: dict[str, Any], field: str, method: str
) -> None:
    options = dict(fields)
    prompt = options.pop("prompt", "a cat")
    with pytest.raises(evo.ValidationError) as info:
        await getattr(client, method)(prompt, **options)
    assert info.value.field == field
    assert isinstance(info.value, ValueError)
    assert fake.stats.create_requests == 0
    assert fake.stats.requests == 0


@pytest.mark.parametrize(
    ("call", "field"),
    [
        ("wait-timeout-zero", "timeout"),
        ("generate-timeout-negative", "timeout"),
        ("wait-empty-id", "task_id"),
        ("get_task-empty-id", "task_id"),
        ("submit-bad-idempotency-key", "idempotency_key"),
    ],
)
async def test_invalid_call_arguments_raise_validation_error_before_any_request(
    fake: FakeEvolink, client: evo.AsyncClient, call: str, field: str
) -> None:
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "wait-timeout-zero": lambda: client.wait(UNKNOWN_ID, timeout=0),
        "generate-timeout-negative": lambda: client.generate(QUICK, timeout=-1),
        "wait-empty-id": lambda: client.wait(""),
        "get_task-empty-id": lambda: client.get_task(" "),
        "submit-bad-idempotency-key": lambda: client.submit(QUICK, idempotency_key="short"),
    }
    with pytest.raises(evo.ValidationError) as info:
        await calls[call]()
    assert info.value.field == field
    assert fake.stats.requests == 0


async def test_a_misspelled_keyword_is_a_validation_error_naming_it_before_any_request(
    fake: FakeEvolink, client: evo.AsyncClient
) -> None:
    with pytest.raises(evo.ValidationError, match="did you mean 'size'") as info:
        await client.generate(QUICK, sise="16:9")
    assert info.value.field == "sise"
    assert fake.stats.requests == 0


async def test_extra_body_fields_are_sent_through_extra(fake: FakeEvolink, client: evo.AsyncClient) -> None:
    task = await client.generate(QUICK, size="1:1", extra={"seed": 7, "style": {"tone": "warm"}})
    body = fake.tasks[task.id].request
    assert body["seed"] == 7
    assert body["style"] == {"tone": "warm"}
    assert body["size"] == "1:1"
    assert body["prompt"] == QUICK


# -- lifecycle -----------------------------------------------------------------------------------


@pytest.mark.parametrize("call", ["submit", "get_task", "credits", "wait", "generate"])
async def test_calls_after_close_raise_client_state_error_without_a_request(
    fake: FakeEvolink, make_client: MakeClient, call: str
) -> None:
    async with make_client(fake) as client:
        pass
    assert client.is_closed
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "submit": lambda: client.submit(QUICK),
        "get_task": lambda: client.get_task(UNKNOWN_ID),
        "credits": lambda: client.credits(),
        "wait": lambda: client.wait(UNKNOWN_ID),
        "generate": lambda: client.generate(QUICK),
    }
    with pytest.raises(evo.ClientStateError, match="closed"):
        await calls[call]()
    assert fake.stats.requests == 0


@pytest.mark.parametrize("call", ["wait", "generate"])
async def test_waiting_on_a_client_never_entered_raises_a_helpful_client_state_error(
    fake: FakeEvolink, make_client: MakeClient, call: str
) -> None:
    client = make_client(fake)
    try:
        method = client.wait if call == "wait" else client.generate
        with pytest.raises(evo.ClientStateError, match="async with"):
            await method(UNKNOWN_ID if call == "wait" else QUICK)
    finally:
        await client.aclose()
    assert fake.stats.requests == 0


async def test_submit_get_task_and_credits_work_without_entering_the_client(
    fake: FakeEvolink, make_client: MakeClient
) -> None:
    client = make_client(fake)
    try:
        task = await client.submit(QUICK)
        read = await client.get_task(task)
        balance = await client.credits()
    finally:
        await client.aclose()
    assert read.id == task.id
    assert balance.remaining == pytest.approx(fake.credits)
    assert fake.stats.creates == 1
    assert fake.stats.read_requests == 1
    assert client.is_closed


async def test_entering_a_client_twice_raises_client_state_error(fake: FakeEvolink, make_client: MakeClient) -> None:
    client = make_client(fake)
    async with client:
        with pytest.raises(evo.ClientStateError, match="only once"):
            await client.__aenter__()
        # The failed second entry did not break the first.
        assert (await client.generate(QUICK)).status is evo.TaskStatus.COMPLETED
    with pytest.raises(evo.ClientStateError):
        async with client:
            pass


async def test_aclose_is_idempotent(fake: FakeEvolink, make_client: MakeClient) -> None:
    async with make_client(fake) as client:
        await client.generate(QUICK)
        await client.aclose()
        await client.aclose()
        assert client.is_closed
    await client.aclose()
    assert client.is_closed


async def test_closing_the_client_fails_a_concurrent_waiter_with_its_task_id(
    fake: FakeEvolink, make_client: MakeClient
) -> None:
    errors: list[evo.EvolinkError] = []
    async with make_client(fake) as client:
        task = await client.submit("[never]")

        async def waiter() -> None:
            try:
                await client.wait(task)
            except evo.EvolinkError as exc:
                errors.append(exc)

        with anyio.fail_after(10):  # a hang guard, not a speed claim
            async with anyio.create_task_group() as tg:
                tg.start_soon(waiter)
                await until(lambda: client.waiting == 1)
                await client.aclose()
        assert client.is_closed
    (err,) = errors
    assert isinstance(err, evo.ClientStateError)
    assert err.task_id == task.id
    assert task.id in str(err)


async def test_aclose_from_another_task_fails_waiters_without_cancelling_the_caller(
    fake: FakeEvolink, make_client: MakeClient
) -> None:
    errors: list[evo.EvolinkError] = []
    async with make_client(fake) as client:
        task = await client.submit("[never]")

        async def closer() -> None:
            await until(lambda: client.waiting == 1)
            await client.aclose()

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(closer)
                try:
                    await client.wait(task)
                except evo.ClientStateError as exc:
                    errors.append(exc)
        # The caller's own code still runs: closing did not cancel the scope it runs in.
        await anyio.sleep(0.01)
    (err,) = errors
    assert err.task_id == task.id


async def test_closing_during_a_create_sends_no_more_requests_and_keeps_the_idempotency_key(
    fake: FakeEvolink, make_client: MakeClient
) -> None:
    fake.inject(Fault(kind="slow", route="create", delay=0.5))
    key = "close-during-create-0001"
    errors: list[evo.EvolinkError] = []
    client = make_client(fake)
    async with client:

        async def generate() -> None:
            try:
                await client.generate(QUICK, idempotency_key=key)
            except evo.EvolinkError as exc:
                errors.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(generate)
            await until(lambda: fake.stats.create_requests == 1)
            await client.aclose()
    await anyio.sleep(0.3)  # longer than every retry backoff of FAST_RETRY
    # The in-flight create was cut off by the close and not retried on a fresh session.
    assert fake.stats.create_requests == 1
    (err,) = errors
    assert err.idempotency_key == key
    assert isinstance(err, (evo.SubmissionUnknownError, evo.ClientStateError))


async def test_closing_during_a_create_that_still_succeeds_reports_the_created_task_id(
    fake: FakeEvolink, make_client: MakeClient
) -> None:
    # With the caller's own session, closing the client does not cut the create off: it lands.
    fake.inject(Fault(kind="slow", route="create", delay=0.3))
    errors: list[evo.EvolinkError] = []
    async with aiohttp.ClientSession() as session:
        client = make_client(fake, session=session)
        async with client:

            async def generate() -> None:
                try:
                    await client.generate(QUICK)
                except evo.EvolinkError as exc:
                    errors.append(exc)

            async with anyio.create_task_group() as tg:
                tg.start_soon(generate)
                await until(lambda: fake.stats.create_requests == 1)
                await client.aclose()
        assert not session.closed
    (err,) = errors
    assert isinstance(err, evo.ClientStateError)
    assert err.task_id == only_task_id(fake)
    assert fake.stats.creates == 1


async def test_repr_shows_in_flight_and_waiting_counts_and_never_the_key(
    fake: FakeEvolink, make_client: MakeClient
) -> None:
    async with make_client(fake) as client:
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(client.generate, "[never] one")
                tg.start_soon(client.generate, "[never] two")
                await until(lambda: client.waiting == 2)
                text = repr(client)
                scope.cancel()
        assert "in_flight=2/" in text
        assert "waiting=2" in text
        assert fake.api_key not in text
        assert fake.api_key not in repr(client._api.transport)
        assert "in_flight=0/" in repr(client)
    assert "closed" in repr(client)
    assert fake.api_key not in repr(client)


async def test_closed_clients_leave_no_unclosed_session_resource_warnings(
    fake: FakeEvolink, make_client: MakeClient
) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        entered = make_client(fake)
        async with entered:
            await entered.generate(QUICK)
        never_entered = make_client(fake)
        await never_entered.credits()
        await never_entered.aclose()
        del entered, never_entered
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []
    assert fake.stats.credits_requests == 1


async def test_client_can_be_constructed_outside_an_event_loop(fake: FakeEvolink) -> None:
    # Web apps build their client at import time, before any loop runs.
    client = await anyio.to_thread.run_sync(lambda: evo.AsyncClient(fake.api_key, base_url=fake.base_url))
    async with client:
        assert (await client.credits()).remaining == pytest.approx(fake.credits)


# -- timeouts -------------------------------------------------------------------------------------


async def test_wait_timeout_raises_wait_timeout_error_with_task_id_and_last_state(
    fake: FakeEvolink, client: evo.AsyncClient
) -> None:
    submitted = await client.submit("[never]")
    with pytest.raises(evo.WaitTimeoutError) as info:
        await client.wait(submitted, timeout=0.3)
    err = info.value
    assert isinstance(err, TimeoutError)
    assert err.task_id == submitted.id
    assert err.timeout == 0.3
    assert err.last is not None
    assert err.last.id == submitted.id
    assert not err.last.is_final
    assert client.waiting == 0


async def test_generate_timeout_error_carries_the_task_id_it_created(
    fake: FakeEvolink, client: evo.AsyncClient
) -> None:
    with pytest.raises(evo.WaitTimeoutError) as info:
        await client.generate("[never]", timeout=0.3)
    assert info.value.task_id == only_task_id(fake)
    assert client.in_flight == 0


async def test_client_stays_usable_after_a_wait_timeout_and_returns_the_task_once_finished(
    fake: FakeEvolink, client: evo.AsyncClient
) -> None:
    submitted = await client.submit("[never]")
    with pytest.raises(evo.WaitTimeoutError):
        await client.wait(submitted.id, timeout=0.3)
    fake.complete(submitted.id)
    final = await client.wait(submitted.id)
    assert final.status is evo.TaskStatus.COMPLETED
    assert final.results
    other = await client.generate(QUICK)
    assert other.status is evo.TaskStatus.COMPLETED


# -- cancellation ---------------------------------------------------------------------------------


async def test_cancelling_generate_releases_its_in_flight_slot_and_the_client_stays_usable(
    fake: FakeEvolink, client: evo.AsyncClient
) -> None:
    with anyio.CancelScope() as scope:
        # Cancel as soon as the task exists, i.e. while generate holds its slot and waits.
        await client.generate("[never]", on_update=lambda task: scope.cancel())
    assert scope.cancelled_caught
    assert fake.stats.creates == 1
    assert client.in_flight == 0
    assert client.waiting == 0
    task = await client.generate(QUICK)
    assert task.status is evo.TaskStatus.COMPLETED


async def test_generate_cancelled_by_move_on_after_releases_its_slot(
    fake: FakeEvolink, client: evo.AsyncClient
) -> None:
    with anyio.move_on_after(0.3) as scope:
        await client.generate("[never]")
    assert scope.cancelled_caught
    assert client.in_flight == 0
    assert client.waiting == 0
    assert (await client.generate(QUICK)).status is evo.TaskStatus.COMPLETED


async def test_cancelling_a_generate_queued_for_a_slot_creates_nothing(
    fake: FakeEvolink, make_client: MakeClient
) -> None:
    async with make_client(fake, limits=evo.Limits(max_in_flight=1, requests_per_second=None)) as client:
        with anyio.CancelScope() as holder:
            async with anyio.create_task_group() as tg:
                tg.start_soon(client.generate, "[never] holds the only slot")
                await until(lambda: client.waiting == 1)
                with anyio.move_on_after(0.2) as queued:
                    await client.generate(QUICK)
                assert queued.cancelled_caught
                assert client.in_flight == 1
                holder.cancel()
        assert fake.stats.create_requests == 1
        assert client.in_flight == 0
        assert (await client.generate(QUICK)).status is evo.TaskStatus.COMPLETED


async def test_cancelling_a_wait_stops_watching_and_a_later_wait_still_works(
    fake: FakeEvolink, client: evo.AsyncClient
) -> None:
    submitted = await client.submit("[never]")
    with anyio.move_on_after(0.3) as scope:
        await client.wait(submitted)
    assert scope.cancelled_caught
    assert client.waiting == 0
    fake.complete(submitted.id)
    assert (await client.wait(submitted)).status is evo.TaskStatus.COMPLETED


# -- a task id is never lost ------------------------------------------------------------------------


async def test_wait_on_a_well_formed_unknown_id_raises_not_found_with_the_task_id(
    fake: FakeEvolink, client: evo.AsyncClient
) -> None:
    with pytest.raises(evo.NotFoundError) as info:
        await client.wait(UNKNOWN_ID, timeout=10)
    err = info.value
    assert err.task_id == UNKNOWN_ID
    assert err.status == 404
    assert err.code == "task_not_found"
    assert UNKNOWN_ID in str(err)
    assert client.waiting == 0


async def test_generate_whose_task_expires_while_waiting_raises_not_found_with_its_task_id(
    fake: FakeEvolink, client: evo.AsyncClient
) -> None:
    errors: list[evo.EvolinkError] = []

    async def generate() -> None:
        try:
            await client.generate("[never]", timeout=10)
        except evo.EvolinkError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(generate)
        await until(lambda: len(fake.tasks) == 1 and client.waiting == 1)
        task_id = only_task_id(fake)
        del fake.tasks[task_id]  # the server forgot it, as after its retention period
    (err,) = errors
    assert isinstance(err, evo.NotFoundError)
    assert err.task_id == task_id
    assert client.in_flight == 0


async def test_timeouts_wait_bounds_every_wait_that_passes_no_timeout(
    fake: FakeEvolink, make_client: MakeClient
) -> None:
    # Issue 9, defect 6: web servers rarely cancel a handler whose client left; a client-wide bound keeps an
    # abandoned wait from holding its slot forever.
    async with make_client(fake, timeouts=evo.Timeouts(wait=0.5)) as client:
        with anyio.fail_after(10):
            with pytest.raises(evo.WaitTimeoutError) as info:
                await client.generate("[never] [eta:0] abandoned")
        assert info.value.task_id in fake.tasks
        assert client.in_flight == 0
        task = await client.submit("[never] [eta:0] waited on")
        with anyio.fail_after(10), pytest.raises(evo.WaitTimeoutError):
            await client.wait(task)
        (outcome,) = await client.generate_all(["[never] [eta:0] in a batch"])
        assert isinstance(outcome.error, evo.WaitTimeoutError)
        assert outcome.task_id in fake.tasks
        # A call's own timeout still wins.
        done = await client.generate("[duration:0.8] [eta:0] slow but fine", timeout=10)
        assert done.status is evo.TaskStatus.COMPLETED


# -- a wait that ends before its task is final names the task (issue 19, item 2) ------------------------


def _unfinished_warnings(caplog: pytest.LogCaptureFixture, task_id: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and task_id in r.getMessage()]


async def test_generate_cancelled_after_its_create_names_the_task_in_the_error_and_one_warning(
    fake: FakeEvolink, client: evo.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    import asyncio

    caplog.set_level(logging.WARNING, logger="evolink_async")
    call = asyncio.ensure_future(client.generate("[never] cancelled after its create"))
    await until(lambda: fake.stats.creates == 1)
    (task_id,) = fake.tasks
    call.cancel()
    with pytest.raises(asyncio.CancelledError) as info:
        await call
    assert f"evolink task_id={task_id}" in getattr(info.value, "__notes__", [])
    assert len(_unfinished_warnings(caplog, task_id)) == 1


async def test_generate_past_its_deadline_names_the_task_in_one_warning(
    fake: FakeEvolink, client: evo.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="evolink_async")
    with pytest.raises(evo.WaitTimeoutError) as info:
        await client.generate("[never] past its deadline", timeout=0.1)
    assert info.value.task_id in fake.tasks
    assert len(_unfinished_warnings(caplog, info.value.task_id)) == 1
