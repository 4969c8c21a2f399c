"""The shared poller: the pure scheduling rule (``next_delay``), batch reads and their fallback, surviving
transient read failures, shared reads, vanished tasks, and how few reads a task costs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import anyio
import attrs
import pytest
from conftest import FAST_POLL, until
from hypothesis import given
from hypothesis import strategies as st

import evolink_async as evo
from evolink_async._schedule import next_delay
from evolink_async.testing import FakeEvolink, Fault, TaskPlan

MakeClient = Callable[..., evo.AsyncClient]

POLICY = evo.PollPolicy()  # min 0.5 s, max 30 s, default estimate 30 s, first check at 0.5, margin 0.03
NO_JITTER = attrs.evolve(POLICY, jitter=0.0)
PER_TASK = attrs.evolve(FAST_POLL, batch=False)
UNKNOWN_ID = "task-unified-1-zzzzzzzz"


def middle() -> float:
    return 0.5  # rng value that makes the jitter factor exactly 1


async def generate_all(client: evo.AsyncClient, prompts: list[str]) -> list[evo.Task]:
    results: list[evo.Task] = []

    async def one(prompt: str) -> None:
        results.append(await client.generate(prompt))

    async with anyio.create_task_group() as tg:
        for prompt in prompts:
            tg.start_soon(one, prompt)
    return results


# -- next_delay: the pure scheduling rule ---------------------------------------------------------------


def test_next_delay_aims_just_past_the_finish_predicted_by_progress() -> None:
    # 10 s for 50 %: 20 s in total, 10 s to go, plus a 3 % margin of the total.
    delay = next_delay(POLICY, elapsed=10.0, estimated=45.0, progress=50, rng=middle)
    assert delay == pytest.approx(10.0 + 0.03 * 20.0)


def test_next_delay_from_progress_ignores_the_estimate() -> None:
    a = next_delay(POLICY, elapsed=10.0, estimated=45.0, progress=40, rng=middle)
    b = next_delay(POLICY, elapsed=10.0, estimated=5.0, progress=40, rng=middle)
    assert a == b == pytest.approx(15.0 + 0.03 * 25.0)


def test_next_delay_first_check_comes_at_first_check_of_the_estimate() -> None:
    assert next_delay(POLICY, elapsed=0.0, estimated=40.0, progress=None, rng=middle) == pytest.approx(20.0)
    assert next_delay(POLICY, elapsed=5.0, estimated=40.0, progress=0, rng=middle) == pytest.approx(15.0)
    custom = attrs.evolve(POLICY, first_check=0.25)
    assert next_delay(custom, elapsed=0.0, estimated=40.0, progress=None, rng=middle) == pytest.approx(10.0)


def test_next_delay_after_the_first_check_aims_just_past_the_estimate() -> None:
    delay = next_delay(POLICY, elapsed=30.0, estimated=40.0, progress=None, rng=middle)
    assert delay == pytest.approx(10.0 + 0.03 * 40.0)


@pytest.mark.parametrize("estimated", [None, -3.0])
def test_next_delay_without_a_usable_estimate_uses_the_default_estimate(estimated: float | None) -> None:
    delay = next_delay(POLICY, elapsed=0.0, estimated=estimated, progress=None, rng=middle)
    assert delay == pytest.approx(POLICY.default_estimate * POLICY.first_check)


def test_next_delay_with_an_estimate_of_zero_reads_at_the_minimum_interval() -> None:
    # estimated_time 0 means "about instant": the first read comes as soon as the floor allows.
    delay = next_delay(POLICY, elapsed=0.0, estimated=0.0, progress=None, rng=middle)
    assert delay == pytest.approx(POLICY.min_interval)


def test_next_delay_overdue_backoff_grows_with_elapsed_time() -> None:
    delays = [
        next_delay(POLICY, elapsed=elapsed, estimated=40.0, progress=None, rng=middle)
        for elapsed in (45.0, 60.0, 90.0, 120.0)
    ]
    assert delays == pytest.approx([45.0 * 0.2, 60.0 * 0.2, 90.0 * 0.2, 120.0 * 0.2])
    assert delays == sorted(delays)
    assert len(set(delays)) == len(delays)


def test_next_delay_is_clamped_to_max_interval() -> None:
    assert next_delay(POLICY, elapsed=10_000.0, estimated=40.0, progress=None, rng=middle) == POLICY.max_interval
    # A slow task at 1 % predicts a finish far away; it is still looked at within max_interval.
    assert next_delay(POLICY, elapsed=60.0, estimated=40.0, progress=1, rng=middle) == POLICY.max_interval


def test_next_delay_is_clamped_to_min_interval() -> None:
    # 99 % after 1 s: the predicted finish is a few ms away, but reads are never that close together.
    assert next_delay(POLICY, elapsed=1.0, estimated=40.0, progress=99, rng=middle) == POLICY.min_interval
    assert next_delay(POLICY, elapsed=0.0, estimated=0.5, progress=None, rng=middle) == POLICY.min_interval


def test_next_delay_floor_grows_with_the_time_already_spent() -> None:
    policy = attrs.evolve(POLICY, finish_margin=0.0)
    # 99 % after 100 s predicts ~1 s to go, but a task that took 100 s is not re-read within 3 s.
    assert next_delay(policy, elapsed=100.0, estimated=40.0, progress=99, rng=middle) == pytest.approx(3.0)


def test_next_delay_jitter_spreads_by_the_policy_fraction() -> None:
    base = next_delay(NO_JITTER, elapsed=0.0, estimated=40.0, progress=None)
    low = next_delay(POLICY, elapsed=0.0, estimated=40.0, progress=None, rng=lambda: 0.0)
    high = next_delay(POLICY, elapsed=0.0, estimated=40.0, progress=None, rng=lambda: 0.999999)
    assert base == pytest.approx(20.0)
    assert low == pytest.approx(base * (1 - POLICY.jitter))
    assert high == pytest.approx(base * (1 + POLICY.jitter), rel=1e-5)
    assert low < base < high


@given(
    elapsed=st.floats(min_value=0.0, max_value=1e6, allow_nan=False),
    estimated=st.none() | st.floats(min_value=-10.0, max_value=1e5, allow_nan=False),
    progress=st.none() | st.integers(min_value=0, max_value=100),
    r=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
)
def test_next_delay_always_stays_within_jittered_interval_bounds(
    elapsed: float, estimated: float | None, progress: int | None, r: float
) -> None:
    delay = next_delay(POLICY, elapsed=elapsed, estimated=estimated, progress=progress, rng=lambda: r)
    assert POLICY.min_interval * (1 - POLICY.jitter) <= delay
    assert delay <= POLICY.max_interval * (1 + POLICY.jitter) + 1e-9


# -- batch reads ------------------------------------------------------------------------------------------


async def test_many_concurrent_waits_are_read_in_batches_with_fewer_requests_than_tasks(
    fake: FakeEvolink, client: evo.AsyncClient
) -> None:
    tasks = await generate_all(client, [f"[duration:0.3] batch {i}" for i in range(60)])
    assert len(tasks) == 60
    assert all(t.status is evo.TaskStatus.COMPLETED for t in tasks)
    assert fake.stats.batch_requests > 0
    assert fake.stats.read_requests == 0
    assert fake.stats.batch_requests < 60
    assert set(fake.stats.reads) == {t.id for t in tasks}


async def test_missing_batch_endpoint_is_detected_once_then_polls_per_task(make_client: MakeClient) -> None:
    async with FakeEvolink(batch_endpoint=False) as fake, make_client(fake) as client:
        tasks = await generate_all(client, [f"[duration:0.3] fallback {i}" for i in range(10)])
        assert all(t.status is evo.TaskStatus.COMPLETED for t in tasks)
        assert fake.stats.batch_requests == 1  # the 404 is remembered, not retried per round
        assert fake.stats.read_requests >= 10
        assert set(fake.stats.reads) == {t.id for t in tasks}
        # Later waits go straight to per-task reads.
        more = await generate_all(client, [f"[duration:0.2] later {i}" for i in range(3)])
        assert all(t.status is evo.TaskStatus.COMPLETED for t in more)
        assert fake.stats.batch_requests == 1


async def test_batch_false_policy_never_calls_the_batch_endpoint(fake: FakeEvolink, make_client: MakeClient) -> None:
    async with make_client(fake, poll=PER_TASK) as client:
        tasks = await generate_all(client, [f"[duration:0.3] per task {i}" for i in range(10)])
    assert all(t.status is evo.TaskStatus.COMPLETED for t in tasks)
    assert fake.stats.batch_requests == 0
    assert fake.stats.read_requests >= 10


# -- transient read failures ------------------------------------------------------------------------------

TRANSIENT_FAULTS = {
    "429": Fault(kind="status", status=429),
    "429-retry-after": Fault(kind="status", status=429, retry_after="1"),
    "503": Fault(kind="status", status=503),
    "drop": Fault(kind="drop"),
}


@pytest.mark.parametrize("fault_name", sorted(TRANSIENT_FAULTS))
@pytest.mark.parametrize("route", ["batch", "read"])
async def test_transient_poll_failures_do_not_fail_the_waits(
    fake: FakeEvolink, make_client: MakeClient, route: Literal["batch", "read"], fault_name: str
) -> None:
    fault = attrs.evolve(TRANSIENT_FAULTS[fault_name], route=route, times=3)
    policy = FAST_POLL if route == "batch" else PER_TASK
    async with make_client(fake, poll=policy) as client:
        fake.inject(fault)
        tasks = await generate_all(client, [f"[duration:0.3] survive {i}" for i in range(5)])
        assert client.waiting == 0
    assert len(tasks) == 5
    assert all(t.status is evo.TaskStatus.COMPLETED for t in tasks)
    assert fake.stats.faults_applied == 3  # every fault hit a poll, and none failed a wait
    assert fake.pending_faults == ()
    assert fake.stats.creates == 5


# -- shared reads -------------------------------------------------------------------------------------------


async def test_many_waiters_on_one_task_share_its_reads(fake: FakeEvolink, client: evo.AsyncClient) -> None:
    task = await client.submit("[duration:0.5] shared")
    results: list[evo.Task] = []

    async def waiter(by_id: bool) -> None:
        results.append(await client.wait(task.id if by_id else task))

    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(waiter, i % 2 == 0)
        await until(lambda: client.waiting == 1)
    assert len(results) == 20
    assert all(r.status is evo.TaskStatus.COMPLETED for r in results)
    assert fake.stats.reads[task.id] <= 4  # one waiter's worth, not twenty
    assert fake.stats.read_requests + fake.stats.batch_requests <= 4


async def test_a_fresh_get_task_read_resolves_waiters_without_another_poll(
    fake: FakeEvolink, make_client: MakeClient
) -> None:
    # The default policy would first look at this task after 30 s (half its 60 s estimate).
    async with make_client(fake, poll=evo.PollPolicy()) as client:
        task = await client.submit("[never] [eta:60]")
        results: list[evo.Task] = []

        async def waiter() -> None:
            results.append(await client.wait(task))

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(waiter)
                await until(lambda: client.waiting == 1)
                fake.complete(task.id)
                read = await client.get_task(task.id)
        assert read.status is evo.TaskStatus.COMPLETED
    assert [r.status for r in results] == [evo.TaskStatus.COMPLETED]
    assert fake.stats.reads[task.id] == 1
    assert fake.stats.batch_requests == 0


# -- vanished tasks ---------------------------------------------------------------------------------------


async def test_a_task_left_out_of_batch_answers_is_read_directly_and_raises_not_found(
    fake: FakeEvolink, client: evo.AsyncClient
) -> None:
    real = await client.submit("[duration:0.3] real")
    outcomes: dict[str, evo.Task | BaseException] = {}

    async def wait(task_id: str) -> None:
        try:
            outcomes[task_id] = await client.wait(task_id, timeout=10)
        except evo.EvolinkError as exc:
            outcomes[task_id] = exc

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait, real.id)
        tg.start_soon(wait, UNKNOWN_ID)
    missing = outcomes[UNKNOWN_ID]
    assert isinstance(missing, evo.NotFoundError)
    assert missing.task_id == UNKNOWN_ID
    found = outcomes[real.id]
    assert isinstance(found, evo.Task)
    assert found.status is evo.TaskStatus.COMPLETED
    assert fake.stats.batch_requests >= 1
    assert fake.stats.read_requests == 1  # only the vanished id was read on its own


# -- reads per task ------------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", [FAST_POLL, evo.PollPolicy()], ids=["fast", "default"])
async def test_tasks_with_a_known_estimate_cost_few_reads_each(make_client: MakeClient, policy: evo.PollPolicy) -> None:
    async with FakeEvolink(plan=lambda body: TaskPlan(duration=1.0, estimated_time=1)) as fake:
        async with make_client(fake, poll=policy) as client:
            tasks = await generate_all(client, [f"estimated {i}" for i in range(20)])
        assert all(t.status is evo.TaskStatus.COMPLETED for t in tasks)
        assert fake.stats.creates == 20
        assert fake.stats.reads_per_task() <= 4
        assert fake.stats.batch_requests + fake.stats.read_requests < 20


async def test_an_unreadable_task_fails_its_waiter_and_never_holds_up_the_others_in_its_batch(
    fake: FakeEvolink, client: evo.AsyncClient
) -> None:
    fake.plan = lambda body: TaskPlan(duration=0.2)
    bad = await client.submit("bad")
    good = await client.submit("good")
    # From now on the server answers for "bad" with results of a shape no one can read.
    sim_task = fake.tasks[bad.id]
    sim_task.plan = attrs.evolve(sim_task.plan, extra={"results": [None]})
    with anyio.fail_after(10):  # a hang would be the bug
        done = await client.wait(good)
        with pytest.raises(evo.MalformedResponseError) as info:
            await client.wait(bad)
    assert done.status is evo.TaskStatus.COMPLETED
    assert info.value.task_id == bad.id


@pytest.mark.parametrize(
    "fault",
    [Fault(route="batch", kind="status", status=501, times=99), Fault(route="batch", kind="malformed", times=99)],
)
async def test_a_batch_endpoint_that_never_works_falls_back_to_per_task_reads(
    fake: FakeEvolink, client: evo.AsyncClient, fault: Fault
) -> None:
    fake.inject(fault)
    with anyio.fail_after(15):
        tasks = await generate_all(client, [f"[duration:0.2] fallback {i}" for i in range(4)])
    assert all(t.status is evo.TaskStatus.COMPLETED for t in tasks)
    assert fake.stats.read_requests >= 4
    assert client._engine.poller.batch_supported is False
