"""Client-side limits: the in-flight cap on running tasks, the request-rate token bucket, its slow-down on
429 and recovery, and Retry-After pausing every request. Time is only ever bounded from below here."""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio
import pytest
from conftest import until

import evolink_async as evo
from evolink_async._pace import RateLimiter
from evolink_async.testing import FakeEvolink, Fault

MakeClient = Callable[..., evo.AsyncClient]


# -- in-flight cap ---------------------------------------------------------------------------------------


async def test_max_in_flight_caps_tasks_running_at_the_server_and_uses_all_slots(
    fake: FakeEvolink, make_client: MakeClient
) -> None:
    held: list[int] = []
    results: list[evo.Task] = []
    async with make_client(fake, limits=evo.Limits(max_in_flight=3, requests_per_second=None)) as client:

        def record(task: evo.Task) -> None:
            held.append(client.in_flight)

        async def one(i: int) -> None:
            results.append(await client.generate(f"[duration:0.2] capped {i}", on_update=record))

        async with anyio.create_task_group() as tg:
            for i in range(12):
                tg.start_soon(one, i)
        assert client.in_flight == 0
    assert len(results) == 12
    assert all(t.status is evo.TaskStatus.COMPLETED for t in results)
    assert fake.stats.creates == 12
    assert fake.stats.max_running <= 3
    assert fake.stats.max_running == 3  # the cap is a cap, not a queue of one
    assert max(held) <= 3


async def test_generate_waiting_for_a_slot_shows_as_queued_in_repr(fake: FakeEvolink, make_client: MakeClient) -> None:
    async with make_client(fake, limits=evo.Limits(max_in_flight=1, requests_per_second=None)) as client:
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(client.generate, "[never] first")
                await until(lambda: client.waiting == 1)
                tg.start_soon(client.generate, "[never] second")
                await until(lambda: "queued=1" in repr(client))
                assert client.in_flight == 1
                assert fake.stats.create_requests == 1
                scope.cancel()
        assert client.in_flight == 0


# -- token bucket ------------------------------------------------------------------------------------


async def test_requests_per_second_paces_requests_to_at_least_the_configured_interval(
    fake: FakeEvolink, make_client: MakeClient
) -> None:
    async with make_client(fake, limits=evo.Limits(requests_per_second=20, burst=1)) as client:
        start = time.monotonic()
        async with anyio.create_task_group() as tg:
            for _ in range(21):
                tg.start_soon(client.credits)
        elapsed = time.monotonic() - start
    # One token at once, then 20 more at 1/20 s each: at least ~1 s (lower bound only).
    assert elapsed >= 0.9
    assert fake.stats.credits_requests == 21
    arrivals = [r.time for r in fake.stats.requests_seen if r.path == "/v1/credits"]
    assert arrivals[-1] - arrivals[0] >= 0.9


async def test_rate_limiter_spaces_acquires_by_one_over_rate() -> None:
    limiter = RateLimiter(20.0, 1)
    start = time.monotonic()
    for _ in range(11):
        await limiter.acquire()
    assert time.monotonic() - start >= 0.45
    assert limiter.queued == 0


# -- slow-down on 429 and recovery ----------------------------------------------------------------------


def test_rate_limiter_halves_its_rate_on_each_429_down_to_a_sixteenth() -> None:
    limiter = RateLimiter(16.0, 4)
    limiter.on_rate_limited(None)
    assert limiter.rate == pytest.approx(8.0)
    limiter.on_rate_limited(None)
    assert limiter.rate == pytest.approx(4.0)
    for _ in range(10):
        limiter.on_rate_limited(None)
    assert limiter.rate == pytest.approx(1.0)
    assert limiter.slowdowns == 12
    assert limiter.nominal == 16.0


def test_rate_limiter_recovers_additively_on_success_up_to_nominal() -> None:
    limiter = RateLimiter(20.0, 4)
    limiter.on_rate_limited(None)
    assert limiter.rate == pytest.approx(10.0)
    limiter.on_success()
    assert limiter.rate == pytest.approx(11.0)  # + nominal / 20
    for _ in range(50):
        limiter.on_success()
    assert limiter.rate == pytest.approx(20.0)


def test_unpaced_rate_limiter_stays_unpaced_after_a_429() -> None:
    limiter = RateLimiter(None, 1)
    limiter.on_rate_limited(None)
    limiter.on_success()
    assert limiter.rate is None
    assert limiter.slowdowns == 1


async def test_rate_limiter_slowdown_applies_at_once_even_with_saved_burst_tokens() -> None:
    limiter = RateLimiter(10.0, 10)
    limiter.on_rate_limited(None)  # 5/s now, and the saved burst is gone
    start = time.monotonic()
    await limiter.acquire()
    assert time.monotonic() - start >= 0.15  # about 1 / 5 s


@pytest.mark.parametrize("rate", [None, 100.0], ids=["unpaced", "paced"])
async def test_rate_limiter_retry_after_pauses_the_next_acquire(rate: float | None) -> None:
    limiter = RateLimiter(rate, 10)
    limiter.on_rate_limited(0.3)
    start = time.monotonic()
    await limiter.acquire()
    assert time.monotonic() - start >= 0.25


async def test_client_slows_down_after_a_429_and_recovers_after_successes(
    fake: FakeEvolink, make_client: MakeClient
) -> None:
    async with make_client(fake, limits=evo.Limits(requests_per_second=50, burst=5)) as client:
        fake.inject(Fault(kind="status", status=429, route="credits"))
        await client.credits()  # the 429 is retried and succeeds
        assert fake.stats.rate_limited == 1
        assert client._rate.slowdowns == 1
        assert client._rate.rate is not None
        assert client._rate.rate < 50
        slowed = client._rate.rate
        for _ in range(12):
            await client.credits()
        assert client._rate.rate > slowed
        assert client._rate.rate == pytest.approx(50)
        assert client._rate.slowdowns == 1
    assert fake.stats.credits_requests == 14


async def test_retry_after_on_one_request_pauses_the_clients_other_requests(
    fake: FakeEvolink, make_client: MakeClient
) -> None:
    # Unpaced: only the server's Retry-After can hold the second request back.
    async with make_client(fake) as client:
        fake.inject(Fault(kind="status", status=429, retry_after="1", route="credits"))
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.credits)
            await until(lambda: client._rate.slowdowns == 1)
            start = time.monotonic()
            await client.credits()
            other = time.monotonic() - start
    assert other >= 0.8
    arrivals = [r.time for r in fake.stats.requests_seen if r.path == "/v1/credits"]
    assert len(arrivals) == 3  # the 429, its retry, the other request
    assert all(t - arrivals[0] >= 0.9 for t in arrivals[1:])


async def test_poll_reads_are_paced_by_the_same_bucket_as_other_requests(
    fake: FakeEvolink, make_client: MakeClient
) -> None:
    async with make_client(fake, limits=evo.Limits(requests_per_second=10, burst=1)) as client:
        task = await client.generate("[duration:0.2] paced")
        assert task.status is evo.TaskStatus.COMPLETED
    arrivals = [r.time for r in fake.stats.requests_seen]
    assert fake.stats.create_requests == 1
    assert fake.stats.batch_requests + fake.stats.read_requests == len(arrivals) - 1 >= 1
    # One create and its poll reads share 10 tokens per second: at least 0.1 s apart on average.
    assert arrivals[-1] - arrivals[0] >= 0.1 * (len(arrivals) - 1) - 0.02


# -- reads before creates ------------------------------------------------------------------------------


async def test_a_queued_read_goes_before_creates_queued_earlier() -> None:
    limiter = RateLimiter(20.0, 1)  # one token, then one every 50 ms; no reserve with a burst of 1
    await limiter.acquire()  # the bucket is empty now: everyone below queues
    order: list[str] = []

    async def take(name: str, urgent: bool) -> None:
        await limiter.acquire(urgent=urgent)
        order.append(name)

    async with anyio.create_task_group() as tg:
        for i in range(3):
            tg.start_soon(take, f"create {i}", False)
        await until(lambda: limiter.queued == 3)
        tg.start_soon(take, "read", True)
    # The head create may already hold its turn; the read overtakes every create behind it.
    assert order.index("read") <= 1
    assert [name for name in order if name != "read"] == ["create 0", "create 1", "create 2"]


async def test_creates_leave_a_quarter_of_the_burst_for_reads() -> None:
    limiter = RateLimiter(1.0, 8)  # reserve 2: creates stop at two tokens left; refills take a second each
    assert limiter.reserve == 2
    for _ in range(6):
        await limiter.acquire()
    with anyio.move_on_after(0.3) as scope:
        await limiter.acquire()  # a third create would eat the reserve: it waits
    assert scope.cancelled_caught
    for _ in range(2):  # the reserve serves reads at once
        with anyio.fail_after(0.3):
            await limiter.acquire(urgent=True)


async def test_under_the_pace_a_status_read_overtakes_queued_creates_at_the_server(
    fake: FakeEvolink, make_client: MakeClient
) -> None:
    limits = evo.Limits(requests_per_second=5.0, burst=1, max_in_flight=16)
    async with make_client(fake, limits=limits) as client:
        first = await client.submit("[never] a cat")
        async with anyio.create_task_group() as tg:
            for i in range(4):
                tg.start_soon(client.submit, f"[never] queued create {i}")
            await until(lambda: client._rate.queued == 4)
            tg.start_soon(client.get_task, first)
    routes = [(r.method, r.path) for r in fake.stats.requests_seen]
    read_at = routes.index(("GET", f"/v1/tasks/{first.id}"))
    creates_after = [r for r in routes[read_at:] if r == ("POST", "/v1/images/generations")]
    assert len(creates_after) >= 3  # at most the head create (already holding its turn) went before it
