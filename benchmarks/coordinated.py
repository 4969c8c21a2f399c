"""Limits across processes through Redis (issue 11, part 4): the shared pace, the callback relay, shared batches.

A real ``redis-server`` is started on a free loopback port (Debian's package; ``make system-deps`` installs it),
and the simulator runs in this process (``FakeEvolink``), counting what it receives with its own clock.

1. **Shared pace.** 4 worker processes, one API key, each with ``Limits(requests_per_second=R, burst=B)`` and
   plenty of work (tasks of 0.2 s, 24 in flight each). Measured by the simulator over the steady part of the run
   (after the first second): aggregate requests/s. Target: <= R x 1.05 (+ the burst, over the window) and
   >= 0.9 R. Baseline, same run: the same 4 workers without a coordinator (each paces alone: about 4 R).
2. **Callback relay lag.** Two clients (replicas) in this process with one coordinator each; the callback URL
   is replica B's receiver, the waits are on replica A. Lag = (A's ``generate`` returned) - (the simulator's
   delivery attempt to B), p50 and p99 over the tasks. Baseline, same run: the same tasks with the callback
   delivered to A itself (no relay). Target: relay p99 <= 250 ms.
3. **Shared batch throughput.** One batch of N inputs through ``coordinator.journal`` with 1, 2 and 4 worker
   processes under one shared pace R: tasks/s for each. It should stay at the pace (about R / requests per
   task), not multiply with workers. Target: 4 workers <= 1.15 x 1 worker.

Exit status 0 when the targets are met, 1 otherwise. ``--quick`` runs a slice (about 30 s) and exits 0.

    python benchmarks/coordinated.py            # about 2 minutes
    python benchmarks/coordinated.py --quick
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path

import anyio
import trustme
from aiohttp import web

import evolink_async as evo
from evolink_async.redis import RedisCoordinator
from evolink_async.testing import FakeEvolink, TaskPlan

HERE = Path(__file__).resolve().parent
RATE, BURST = 20.0, 5
PACE_TARGET_LOW, PACE_TARGET_HIGH = 0.90, 1.05
RELAY_P99_TARGET = 0.250
BATCH_SCALE_TARGET = 1.15

WORKER = """
import sys, anyio, evolink_async as evo
from evolink_async.redis import RedisCoordinator
base, key, url, mode, seconds, name, count = sys.argv[1:8]
async def main():
    limits = evo.Limits(max_in_flight=24, requests_per_second=RATE_VALUE, burst=BURST_VALUE)
    poll = evo.PollPolicy(min_interval=0.05, batch=False)
    coordinator = RedisCoordinator(url, namespace="bench") if mode != "alone" else None
    async with evo.AsyncClient(key, base_url=base, limits=limits, poll=poll, coordinator=coordinator) as client:
        if mode == "batch":
            inputs = [f"[duration:0.2] input {i}" for i in range(int(count))]
            async with client.generate_many(inputs, journal=coordinator.journal(name)) as run:
                async for _ in run:
                    pass
            return
        with anyio.move_on_after(float(seconds)):
            async with anyio.create_task_group() as tg:
                async def loop():
                    while True:
                        await client.generate("[duration:0.2] work")
                for _ in range(24):
                    tg.start_soon(loop)
anyio.run(main)
""".replace("RATE_VALUE", repr(RATE)).replace("BURST_VALUE", str(BURST))


class Redis:
    def __init__(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.dir = tempfile.mkdtemp()
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir, "--save", "", "--appendonly", "no"]
        self.proc = subprocess.Popen(["redis-server", *args], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


async def run_workers(
    fake: FakeEvolink, redis: Redis, n: int, mode: str, seconds: float, name: str, count: int
) -> float:
    script = Path(tempfile.mkdtemp()) / "worker.py"
    script.write_text(WORKER)
    started = time.monotonic()
    async with anyio.create_task_group() as tg:
        for _ in range(n):
            args = [
                sys.executable,
                str(script),
                fake.base_url,
                fake.api_key,
                redis.url,
                mode,
                str(seconds),
                name,
                str(count),
            ]
            tg.start_soon(lambda a=args: anyio.run_process(a, check=True, stderr=None))
    return time.monotonic() - started


def steady_rate(fake: FakeEvolink, skip: float = 1.0) -> float:
    times = sorted(r.time for r in fake.stats.requests_seen)
    if len(times) < 2:
        return 0.0
    start = times[0] + skip
    window = [t for t in times if t >= start]
    return len(window) / (times[-1] - start) if len(window) > 1 else 0.0


async def shared_pace(redis: Redis, seconds: float) -> dict[str, float]:
    out: dict[str, float] = {}
    for mode in ("shared", "alone"):
        async with FakeEvolink(plan=lambda body: TaskPlan(duration=0.2)) as fake:
            await run_workers(fake, redis, 4, mode, seconds, "", 0)
            out[mode] = steady_rate(fake)
    print(
        f"shared pace: 4 processes, R={RATE:g}/s: aggregate {out['shared']:.1f}/s = {out['shared'] / RATE:.2f} R "
        f"(alone, each pacing itself: {out['alone']:.1f}/s = {out['alone'] / RATE:.2f} R)"
    )
    return out


async def _generate_and_time(client: evo.AsyncClient, prompt: str, ends: dict[str, float]) -> None:
    task = await client.generate(prompt)
    ends[task.id] = time.monotonic()


async def relay_lag(redis: Redis, tasks: int) -> dict[str, float]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    result: dict[str, float] = {}
    for relayed in (True, False):
        async with AsyncExitStack() as stack:
            fake = await stack.enter_async_context(FakeEvolink(callback_ssl=client_ctx, allow_local_callbacks=True))
            options = {
                "base_url": fake.base_url,
                "allow_local_callback_url": True,
                # A fast pace: the lag measured is the relay's, not a wait for a token.
                "limits": evo.Limits(max_in_flight=64, requests_per_second=200, burst=50),
            }
            b = await stack.enter_async_context(
                evo.AsyncClient(fake.api_key, coordinator=RedisCoordinator(redis.url, namespace="relay"), **options)
            )
            # The receiver is B's (relay) or A's own (baseline); A is made after, with the URL.
            receiver_client: evo.AsyncClient | None = b if relayed else None
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            url = f"https://127.0.0.1:{sock.getsockname()[1]}/"
            a = evo.AsyncClient(
                fake.api_key, callback_url=url, coordinator=RedisCoordinator(redis.url, namespace="relay"), **options
            )
            await stack.enter_async_context(a)
            runner = web.AppRunner((receiver_client or a).callbacks.aiohttp_app(), access_log=None)
            await runner.setup()
            stack.push_async_callback(runner.cleanup)
            await web.SockSite(runner, sock, ssl_context=server_ctx).start()
            ends: dict[str, float] = {}
            async with anyio.create_task_group() as tg:
                for i in range(tasks):
                    tg.start_soon(_generate_and_time, a, f"[duration:0.3] [eta:1] relayed {i}", ends)
            sent = {rec.task_id: rec.time for rec in fake.stats.callback_log if rec.delivered}
            lags = sorted(ends[t] - sent[t] for t in ends if t in sent)
        key = "relay" if relayed else "local"
        result[f"{key}_p50"] = statistics.median(lags)
        result[f"{key}_p99"] = lags[min(len(lags) - 1, int(0.99 * len(lags)))]
    ms = {k: v * 1000 for k, v in result.items()}
    print(
        f"callback relay: p50 {ms['relay_p50']:.1f} ms, p99 {ms['relay_p99']:.1f} ms "
        f"(to the waiting replica itself: p50 {ms['local_p50']:.1f} ms, p99 {ms['local_p99']:.1f} ms)"
    )
    return result


async def batch_scaling(redis: Redis, count: int) -> dict[int, float]:
    rates: dict[int, float] = {}
    for workers in (1, 2, 4):
        async with FakeEvolink(plan=lambda body: TaskPlan(duration=0.2)) as fake:
            took = await run_workers(fake, redis, workers, "batch", 0, f"scale-{workers}-{time.time()}", count)
            assert fake.stats.creates == count, (workers, fake.stats.creates)
            rates[workers] = count / took
    print(
        "shared batch under one pace: "
        + ", ".join(f"{w} workers {r:.1f} tasks/s" for w, r in rates.items())
        + f" (4 vs 1: {rates[4] / rates[1]:.2f}x)"
    )
    return rates


async def main(args: argparse.Namespace) -> int:
    if shutil.which("redis-server") is None:
        print("redis-server is not installed (make system-deps)")
        return 1
    redis = Redis()
    try:
        pace = await shared_pace(redis, 4.0 if args.quick else 10.0)
        relay = await relay_lag(redis, 20 if args.quick else 100)
        batch = await batch_scaling(redis, 40 if args.quick else 150)
    finally:
        redis.stop()
    misses = []
    if not PACE_TARGET_LOW * RATE <= pace["shared"] <= PACE_TARGET_HIGH * RATE + BURST / 9:
        misses.append("shared pace")
    if relay["relay_p99"] > RELAY_P99_TARGET:
        misses.append("relay p99")
    if batch[4] > BATCH_SCALE_TARGET * batch[1]:
        misses.append("batch scaling")
    if args.json:
        await anyio.Path(args.json).write_text(json.dumps({"pace": pace, "relay": relay, "batch": batch}, indent=2))
    print("targets missed: " + ", ".join(misses) if misses else "all targets met")
    return 0 if args.quick or not misses else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json")
    os.environ.setdefault("PYTHONPATH", str(HERE.parent))
    sys.exit(anyio.run(main, parser.parse_args()))
