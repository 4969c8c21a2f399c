"""Limits shared across processes through a real Redis (started here on a free port), against the simulator.

Workers are separate processes (``coordinated_worker.py``): the shared pace and in-flight cap must hold across
processes, as for uvicorn workers or pods sharing one API key.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import anyio
import pytest
from aiohttp import web
from conftest import FAST_RETRY, TLS, until

import evolink_async as evo
from evolink_async.redis import RedisCoordinator
from evolink_async.testing import FakeEvolink

WORKER = Path(__file__).with_name("coordinated_worker.py")
POLL = evo.PollPolicy(min_interval=0.05, batch=False)

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")


class RedisServer:
    """A redis-server on loopback in a temporary directory, stopped (and restartable) by the test."""

    def __init__(self, tmp: Path) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.tmp = tmp
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.tmp),
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        self.proc = subprocess.Popen(["redis-server", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def sim() -> AsyncIterator[FakeEvolink]:
    async with FakeEvolink() as fake:
        yield fake


async def run_workers(sim: FakeEvolink, redis: RedisServer, counts: list[int], prompt: str) -> list[str]:
    outputs: list[str] = []

    async def one(count: int) -> None:
        args = [sys.executable, str(WORKER), sim.base_url, sim.api_key, redis.url, str(count), prompt]
        result = await anyio.run_process(args, check=False, env={**os.environ, "PYTHONPATH": str(WORKER.parent)})
        assert result.returncode == 0, result.stderr.decode()
        outputs.append(result.stdout.decode())

    with anyio.fail_after(120):
        async with anyio.create_task_group() as tg:
            for count in counts:
                tg.start_soon(one, count)
    return outputs


def most_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] > window:
            start += 1
        best = max(best, end - start + 1)
    return best


async def test_three_processes_share_one_in_flight_cap_and_one_pace(
    sim: FakeEvolink, redis_server: RedisServer
) -> None:
    # Each worker alone would run 3 tasks at once at 8 requests/s: together, 9 at once and 24/s.
    outputs = await run_workers(sim, redis_server, [6, 6, 6], "[duration:0.4] a task")
    assert all("done 6" in out for out in outputs)
    assert sim.stats.creates == 18
    assert sim.stats.max_running <= 3
    times = [r.time for r in sim.stats.requests_seen]
    # The shared bucket: at most rate x window + burst requests in any window (a little slack for clock reads).
    assert most_in_window(times, 2.0) <= 8 * 2 + 4 + 1


async def test_a_killed_processes_slots_come_back_after_the_lease(sim: FakeEvolink, redis_server: RedisServer) -> None:
    args = [sys.executable, str(WORKER), sim.base_url, sim.api_key, redis_server.url, "3", "[never] hold a slot"]
    async with await anyio.open_process(args) as holder:
        await until(lambda: sim.stats.creates == 3, limit=30)
        holder.send_signal(signal.SIGKILL)
        await holder.wait()
    coordinator = RedisCoordinator(redis_server.url, namespace="shared", lease_seconds=1.5)
    limits = evo.Limits(max_in_flight=3, requests_per_second=None)
    seen_before = len(sim.stats.requests_seen)  # the killed process's creates can be a few ms old only
    started = time.monotonic()
    async with evo.AsyncClient(
        sim.api_key, base_url=sim.base_url, limits=limits, poll=POLL, coordinator=coordinator
    ) as client:
        with anyio.fail_after(20):
            task = await client.generate("[duration:0.1] after the crash")
    assert task.is_final
    # All three slots were held by the killed process: the create had to wait for its leases to expire.
    ours = sim.stats.requests_seen[seen_before:]
    first_create = min(r.time for r in ours if r.method == "POST" and r.path == "/v1/images/generations")
    assert first_create - started >= 0.2
    assert sim.stats.creates == 4


async def serve_receiver(stack: AsyncExitStack, client: evo.AsyncClient, tls: TLS) -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    runner = web.AppRunner(client.callbacks.aiohttp_app(), access_log=None, shutdown_timeout=0.25)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    await web.SockSite(runner, sock, ssl_context=tls.server).start()
    return f"https://127.0.0.1:{sock.getsockname()[1]}/"


async def test_a_callback_delivered_to_one_replica_wakes_the_waiter_on_another(
    redis_server: RedisServer, tls: TLS
) -> None:
    async with AsyncExitStack() as stack:
        fake = await stack.enter_async_context(FakeEvolink(callback_ssl=tls.client, allow_local_callbacks=True))
        options = {"base_url": fake.base_url, "retry": FAST_RETRY, "allow_local_callback_url": True}
        # Replica B has the receiver (the load balancer sends every callback there); replica A waits.
        b = evo.AsyncClient(fake.api_key, coordinator=RedisCoordinator(redis_server.url, namespace="relay"), **options)
        await stack.enter_async_context(b)
        url = await serve_receiver(stack, b, tls)
        a = evo.AsyncClient(
            fake.api_key, callback_url=url, coordinator=RedisCoordinator(redis_server.url, namespace="relay"), **options
        )
        await stack.enter_async_context(a)
        with anyio.fail_after(8):  # A's own safety net would first read after 1.5 x the estimate + 10 s
            task = await a.generate("[duration:0.3] [eta:1] a relayed cat")
        assert task.is_final
        assert fake.stats.reads[task.id] == 1, "one confirmation read (B's); A read nothing"
        assert b.callbacks.stats.relayed == 1


async def test_redis_gone_is_a_coordinator_error_naming_it_or_a_warned_local_fallback(
    sim: FakeEvolink, redis_server: RedisServer
) -> None:
    limits = evo.Limits(requests_per_second=50)
    strict = RedisCoordinator(redis_server.url, timeout=1.0)
    lenient = RedisCoordinator(redis_server.url, timeout=1.0, fallback="local")
    async with AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                evo.AsyncClient(sim.api_key, base_url=sim.base_url, limits=limits, poll=POLL, coordinator=c)
            )
            for c in (strict, lenient)
        ]
        for client in clients:
            await client.generate("[duration:0.05] before")
        redis_server.stop()
        with anyio.fail_after(15), pytest.raises(evo.CoordinatorError, match=f"127.0.0.1:{redis_server.port}"):
            await clients[0].generate("[duration:0.05] after")
        with anyio.fail_after(15), pytest.warns(RuntimeWarning, match="own limits"):
            task = await clients[1].generate("[duration:0.05] after, locally")
        assert task.is_final


async def test_redis_down_at_start_is_a_coordinator_error_not_an_exception_group(sim: FakeEvolink) -> None:
    from conftest import closed_port

    coordinator = RedisCoordinator(f"redis://127.0.0.1:{closed_port()}/0", timeout=0.5)
    with pytest.raises(evo.CoordinatorError, match=r"127\.0\.0\.1"):
        async with evo.AsyncClient(sim.api_key, base_url=sim.base_url, coordinator=coordinator):
            pass
    assert sim.stats.requests == 0


async def test_redis_down_at_start_with_a_local_fallback_logs_one_warning_not_one_per_request(
    sim: FakeEvolink, caplog: pytest.LogCaptureFixture
) -> None:
    import logging
    import warnings

    from conftest import closed_port

    caplog.set_level(logging.WARNING, logger="evolink_async")
    coordinator = RedisCoordinator(f"redis://127.0.0.1:{closed_port()}/0", timeout=0.5, fallback="local")
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        async with evo.AsyncClient(sim.api_key, base_url=sim.base_url, poll=POLL, coordinator=coordinator) as client:
            for i in range(3):
                assert (await client.generate(f"[duration:0.05] local {i}")).is_final
    lines = [r for r in caplog.records if "coordinator" in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert len([w for w in warned if "own limits" in str(w.message)]) == 1


def test_the_coordinators_repr_and_errors_hide_the_redis_password() -> None:
    coordinator = RedisCoordinator("redis://user:s3cret-pw@127.0.0.1:1/0")
    assert "s3cret-pw" not in repr(coordinator)
    assert coordinator.url == "redis://127.0.0.1:1/0"


SHARED_WORKER = Path(__file__).with_name("shared_batch_worker.py")


async def test_three_workers_share_a_batch_one_killed_twice_and_each_input_is_created_once(
    sim: FakeEvolink, redis_server: RedisServer
) -> None:
    total = 120
    args = [sys.executable, str(SHARED_WORKER), sim.base_url, sim.api_key, redis_server.url, "shared-120", str(total)]
    reported: list[str] = []

    async def worker(task_status: anyio.abc.TaskStatus[anyio.abc.Process] = anyio.TASK_STATUS_IGNORED) -> None:
        async with await anyio.open_process(args, stderr=None) as proc:
            task_status.started(proc)
            assert proc.stdout is not None
            async for chunk in proc.stdout:
                reported.append(chunk.decode())
            await proc.wait()

    with anyio.fail_after(120):
        async with anyio.create_task_group() as tg:
            victim = await tg.start(worker)
            for _ in range(2):
                tg.start_soon(worker)
            for threshold in (20, 60):
                await until(lambda threshold=threshold: sim.stats.creates >= threshold, limit=60)
                victim.send_signal(signal.SIGKILL)  # mid-batch: its claims run out, the others take over
                victim = await tg.start(worker)
    assert sim.stats.creates == total, "each input created exactly once across all workers"
    reader = RedisCoordinator(redis_server.url, namespace="batch-test")
    journal = reader.journal("shared-120")
    entries = [await journal.get(i) for i in range(total)]
    await reader.aclose()
    assert all(e is not None and e.state == "completed" for e in entries)
    lines = "".join(reported).splitlines()
    done = {int(line.split()[1]) for line in lines if line.startswith("outcome") and line.endswith(" ok")}
    assert len(done) >= total - 2 * 6, "every input reported once by the worker that finished it (bar the killed)"
    assert sum(line.startswith("finished") for line in lines) == 3


async def test_the_shared_batch_example_runs_as_two_workers(
    sim: FakeEvolink, redis_server: RedisServer, tmp_path: Path
) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(f"[duration:0.2] prompt {i}\n" for i in range(10)))
    example = WORKER.parent.parent / "examples" / "shared_batch.py"
    args = [sys.executable, str(example), str(prompts), "--redis", redis_server.url, "--name", "example"]
    args += ["--lease", "2", "--out", str(tmp_path / "out")]
    env = {**os.environ, "EVOLINK_BASE_URL": sim.base_url, "EVOLINK_API_KEY": sim.api_key}
    outputs: list[str] = []

    async def worker() -> None:
        result = await anyio.run_process(args, env=env, check=False)
        assert result.returncode == 0, result.stderr.decode()
        outputs.append(result.stdout.decode())

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker)
            tg.start_soon(worker)
    assert sim.stats.creates == 10
    assert len(list((tmp_path / "out").glob("*.png"))) == 10
    reported = [line for out in outputs for line in out.splitlines() if line.endswith(" ok")]
    assert sorted(int(line.split()[0]) for line in reported) == list(range(10))


async def test_a_forged_callback_for_a_task_no_replica_created_costs_no_read(
    redis_server: RedisServer, tls: TLS
) -> None:
    import aiohttp

    async with AsyncExitStack() as stack:
        fake = await stack.enter_async_context(FakeEvolink())
        coordinator = RedisCoordinator(redis_server.url, namespace="forged")
        b = await stack.enter_async_context(
            evo.AsyncClient(fake.api_key, base_url=fake.base_url, coordinator=coordinator)
        )
        url = await serve_receiver(stack, b, tls)
        session = await stack.enter_async_context(aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls.client)))
        for i in range(20):
            body = {"id": f"task-unified-1757165031-forged{i:02d}", "status": "completed"}
            async with session.post(url, json=body) as resp:
                assert resp.status < 300
        await until(lambda: b.callbacks.stats.ignored == 20)
    assert fake.stats.read_requests == 0, "a forged callback must not spend the key's reads"


async def test_workers_whose_waits_time_out_do_not_wait_on_each_other_forever(
    sim: FakeEvolink, redis_server: RedisServer
) -> None:
    inputs = ["[duration:1.5] a", "[duration:1.5] b"]
    limits = evo.Limits(max_in_flight=1, requests_per_second=None)

    async def worker(results: list[evo.Outcome]) -> None:
        coordinator = RedisCoordinator(redis_server.url, namespace="timeouts", lease_seconds=3)
        client = evo.AsyncClient(sim.api_key, base_url=sim.base_url, limits=limits, poll=POLL, coordinator=coordinator)
        async with client:
            results.extend(await client.generate_all(inputs, journal=coordinator.journal("t"), timeout=0.5))

    a: list[evo.Outcome] = []
    b: list[evo.Outcome] = []
    with anyio.fail_after(30):  # before the fix: both waited on each other's input forever
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker, a)
            tg.start_soon(worker, b)
    assert sim.stats.creates == 2
    assert {o.index for o in a + b} == {0, 1}


async def test_a_budget_holds_across_reruns_of_a_shared_batch(sim: FakeEvolink, redis_server: RedisServer) -> None:
    # 1.6 credits a task here; a budget of 2.4 leaves room for one. Every rerun is a new worker with no price.
    inputs = [f"[duration:0.05] task {i}" for i in range(3)]
    for _ in range(3):
        coordinator = RedisCoordinator(redis_server.url, namespace="budget")
        async with evo.AsyncClient(sim.api_key, base_url=sim.base_url, poll=POLL, coordinator=coordinator) as client:
            await client.generate_all(inputs, journal=coordinator.journal("b"), budget=2.4)
    assert sim.stats.creates == 1


async def test_a_worker_that_lost_its_claim_plans_no_second_key(redis_server: RedisServer) -> None:
    # A worker that stalled past its lease: another took the input over; the first must not send a key of its own.
    coordinator = RedisCoordinator(redis_server.url, namespace="stall", lease_seconds=0.2)
    stalled, other = coordinator.journal("s"), coordinator.journal("s")
    assert await stalled.claim(0)
    await anyio.sleep(0.4)  # no renewal: the lease runs out
    assert await other.claim(0)
    assert await other.plan(0, "fp", "key-of-the-worker-that-holds-it")
    assert not await stalled.plan(0, "fp", "key-of-the-stalled-worker")
    entry = await other.get(0)
    await coordinator.aclose()
    assert entry is not None
    assert entry.idempotency_key == "key-of-the-worker-that-holds-it"
