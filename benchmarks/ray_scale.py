"""Batches on a Ray cluster (issue 21): the account's pace across actors, throughput, no double charge.

A local Ray cluster (``num_cpus=2``, this machine's cores) runs ``evolink_async.ray.generate``; the simulator runs
in this process (``FakeEvolink`` on loopback, served while Ray works in a thread) and counts what it receives with
its own clock. Ray's start-up (actors, imports) is left out of every rate: each is measured at the simulator,
from the first request of a run to its last.

1. **One pace for the account.** 1, 2 and 4 actors under one shared pace R (``Limits(requests_per_second=R)``, the
   coordinator living in Ray), with plenty of work (tasks of 0.2 s). Aggregate requests/s over the steady part (after
   the first second). Target: between 0.9 R and 1.0 R (+ the burst over the window), whatever the actors.
2. **Throughput without a pace.** The same N rows through 2 actors, and through ``generate_many`` in one process,
   on the same 2 cores: rows/s (first request to last). Target: Ray >= 0.8 x ``generate_many``.
3. **Actor kills.** N rows on 2 actors, 3 of their blocks killing their actor (SIGKILL) mid-block once each; Ray
   restarts the actors and runs the blocks again. Target: 0 duplicate creates (the simulator's creates == N).

Exit status 0 when the targets are met, 1 otherwise. ``--quick`` runs a slice and exits 0.

    python benchmarks/ray_scale.py            # a few minutes (Ray's start-up is most of it)
    python benchmarks/ray_scale.py --quick
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import anyio

import evolink_async as evo
from evolink_async.testing import FakeEvolink, TaskPlan

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report from a benchmark
os.environ.setdefault("RAY_worker_niceness", "0")  # Ray's workers at nice 15 would measure the machine's other load
warnings.filterwarnings("ignore", category=DeprecationWarning, module="ray.data.context")  # Ray's own (see pyproject)

import ray  # noqa: E402

from evolink_async.ray import generate  # noqa: E402

RATE, BURST = 20.0, 5
PACE_LOW, PACE_HIGH = 0.90, 1.00
THROUGHPUT_TARGET = 0.8
POLL = evo.PollPolicy(min_interval=0.05, max_interval=0.5, default_estimate=0.2)


def steady_rate(fake: FakeEvolink, skip: float = 1.0) -> float:
    """Requests/s at the simulator from ``skip`` seconds after the first request to the last create (the tail,
    where only the last tasks' reads are left, has no work to pace)."""
    seen = fake.stats.requests_seen
    last_create = max(r.time for r in seen if r.method == "POST" and "generations" in r.path)
    start = min(r.time for r in seen) + skip
    window = [r.time for r in seen if start <= r.time <= last_create]
    return len(window) / (last_create - start) if len(window) > 1 else 0.0


def span(fake: FakeEvolink, since: int) -> float:
    times = [r.time for r in fake.stats.requests_seen[since:]]
    return max(times) - min(times)


def run_ray(fake: FakeEvolink, rows: list[dict[str, Any]], job: str, actors: int, **options: Any) -> list[Any]:
    ds = ray.data.from_items(rows, override_num_blocks=max(8, 4 * actors))
    out = generate(
        ds,
        job=job,
        api_key=fake.api_key,
        base_url=fake.base_url,
        poll=POLL,
        compute=ray.data.ActorPoolStrategy(size=actors, max_concurrent_calls_per_actor=4),
        num_cpus=0.25,
        **{"batch_size": None, **options},
    )
    return list(out.take_all())


async def shared_pace(count: int) -> dict[int, float]:
    rates: dict[int, float] = {}
    limits = evo.Limits(max_in_flight=64, requests_per_second=RATE, burst=BURST)
    for actors in (1, 2, 4):
        async with FakeEvolink(plan=lambda body: TaskPlan(duration=0.2), initial_credits=1e9) as fake:
            rows = [{"custom_id": f"r{i}", "prompt": f"pace {i}"} for i in range(count)]
            job = f"pace-{actors}-{time.time()}"
            await anyio.to_thread.run_sync(functools.partial(run_ray, fake, rows, job, actors, limits=limits))
            rates[actors] = steady_rate(fake)
    print(f"one pace R={RATE:g}/s: " + ", ".join(f"{a} actors {r:.1f}/s = {r / RATE:.2f} R" for a, r in rates.items()))
    return rates


async def throughput(count: int) -> dict[str, float]:
    limits = evo.Limits(max_in_flight=256, requests_per_second=None)
    rows = [{"custom_id": f"r{i}", "prompt": f"fast {i}"} for i in range(count)]
    out: dict[str, float] = {}
    async with FakeEvolink(plan=lambda body: TaskPlan(duration=0.2), initial_credits=1e9) as fake:
        await anyio.to_thread.run_sync(lambda: run_ray(fake, rows, f"fast-{time.time()}", 2, limits=limits))
        out["ray"] = count / span(fake, 0)
        since = len(fake.stats.requests_seen)
        async with evo.AsyncClient(fake.api_key, base_url=fake.base_url, poll=POLL, limits=limits) as client:
            outcomes = await client.generate_all([r["prompt"] for r in rows])
        assert all(o.ok for o in outcomes)
        out["generate_many"] = count / span(fake, since)
    print(
        f"no pace, {count} rows: Ray (2 actors) {out['ray']:.0f} rows/s, generate_many (1 process) "
        f"{out['generate_many']:.0f} rows/s: {out['ray'] / out['generate_many']:.2f}x"
    )
    return out


async def kills(count: int, flags: Path) -> dict[str, int]:
    marked = {count // 5, count // 2, (4 * count) // 5}
    rows = [{"custom_id": f"r{i}", "prompt": f"kill {i}", "kill": i in marked} for i in range(count)]
    where = str(flags)

    def request(row: dict[str, Any]) -> str:
        flag = os.path.join(where, str(row["custom_id"]))
        if row["kill"] and not os.path.exists(flag):
            Path(flag).touch()
            threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGKILL)).start()
        return str(row["prompt"])

    async with FakeEvolink(plan=lambda body: TaskPlan(duration=0.5), initial_credits=1e9) as fake:
        out = await anyio.to_thread.run_sync(
            lambda: run_ray(fake, rows, f"kills-{time.time()}", 2, requests=request, batch_size=25)
        )
        result = {
            "rows": len(out),
            "ok": sum(bool(r["ok"]) for r in out),
            "kills": len(os.listdir(where)),
            "creates": fake.stats.creates,
            "duplicates": fake.stats.creates - count,
            "replays": fake.stats.replays,
        }
    print(
        f"actor kills: {result['kills']} kills, {result['rows']} rows, {result['ok']} ok, creates {result['creates']}"
        f" (duplicates {result['duplicates']}, replayed creates {result['replays']})"
    )
    return result


async def main(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="ray-bench-") as temp:
        ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp, log_to_driver=False, configure_logging=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        try:
            pace = await shared_pace(60 if args.quick else 200)
            fast = await throughput(300 if args.quick else 2000)
            flags = Path(temp) / "kills"
            flags.mkdir()
            killed = await kills(100 if args.quick else 400, flags)
        finally:
            ray.shutdown()
    misses = []
    if not all(PACE_LOW * RATE <= r <= PACE_HIGH * RATE + BURST for r in pace.values()):
        misses.append("shared pace")
    if fast["ray"] < THROUGHPUT_TARGET * fast["generate_many"]:
        misses.append("throughput")
    if killed["duplicates"] != 0 or killed["ok"] != killed["rows"]:
        misses.append("actor kills")
    if args.json:
        report = {"pace": pace, "rate": RATE, "throughput": fast, "kills": killed}
        await anyio.Path(args.json).write_text(json.dumps(report, indent=2))
    print("targets missed: " + ", ".join(misses) if misses else "all targets met")
    return 0 if args.quick or not misses else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json")
    sys.exit(anyio.run(main, parser.parse_args()))
