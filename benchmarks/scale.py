"""No stalls at scale: one process, ``generate_many`` with 20,000 tasks in flight (issue 7, part 4).

One client, ``Limits(max_in_flight=20000, requests_per_second=None)`` (unpaced, so that all get in flight
quickly; the other limits default, 32 connections), ``PollPolicy(batch=True)`` (batch reads), and
``client.generate_many(<lazy generator of 20,000 prompts>, max_in_flight=20000)``. The simulator runs in its
**own process** (``benchmarks/_sim.py``); its tasks last uniformly 25-30 s and report ``estimated_time`` 27.

Measured in the client's process:

- event-loop stalls: a sleeper task in the client's loop sleeps 10 ms again and again and records each
  oversleep (how much later than 10 ms it woke). Reported: max and p99, over the whole batch and per phase
  (ramp: until every task is created; in flight: until the first outcome; completing: the rest).
  Baseline, same run: the same sleeper over ``--idle`` seconds (2) of the idle client before the batch.
- RSS per in-flight task: (the highest VmRSS sampled while all tasks were created and none had ended - VmRSS
  just before the batch, after a warm-up batch of 50 short tasks and ``gc.collect()``) / tasks.
  Baseline: that VmRSS before the batch (the same process), printed beside it.

All tasks in flight means ``run.stats.submitted`` reached the count with ``run.stats.done`` still 0 (the
server's own count of running tasks is printed beside it). By default the batch then runs to its end (about 30 s
more; it shows the stalls of the first batch reads and of 20,000 outcomes); ``--stop-when-full`` leaves the
``async with`` block (which cancels the batch) as soon as all are in flight and a few RSS samples are taken.

Targets: max stall <= 100 ms, p99 <= 50 ms, <= 10 KB RSS per in-flight task. Exit status 0 when met, 1
otherwise. ``--quick``: 2,000 tasks of 2.5-3 s (``estimated_time`` 3), about 10 s, figures only, exit 0
(unless ``--targets``).

    python benchmarks/scale.py                 # 20,000 tasks, to the end (about 1 minute)
    python benchmarks/scale.py --stop-when-full
    python benchmarks/scale.py --tasks 50000 --json scale.json
    python benchmarks/scale.py --quick
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from array import array
from collections.abc import Iterator
from typing import Any

import anyio
from _sim import Simulator, proc_status

import evolink_async as evo

KB = 1024
MB = 1024 * 1024
TICK = 0.010
MAX_STALL_TARGET = 0.100
P99_STALL_TARGET = 0.050
RSS_PER_TASK_TARGET = 10 * KB


def prompts(n: int, prefix: str = "scale benchmark prompt") -> Iterator[str]:
    for i in range(n):
        yield f"{prefix} {i}"


class Sleeper:
    """Sleeps ``TICK`` again and again in the event loop; records (woke at, oversleep) for every tick."""

    def __init__(self) -> None:
        self.at = array("d")
        self.over = array("d")

    async def run(self) -> None:
        clock = time.perf_counter
        while True:
            t = clock()
            await anyio.sleep(TICK)
            now = clock()
            self.at.append(now)
            self.over.append(now - t - TICK)

    def window(self, start: float, end: float) -> list[float]:
        return sorted(o for a, o in zip(self.at, self.over, strict=True) if start <= a < end)


def summary(over: list[float]) -> dict[str, float]:
    if not over:
        return {"ticks": 0, "max_ms": float("nan"), "p99_ms": float("nan"), "p50_ms": float("nan")}
    return {
        "ticks": len(over),
        "max_ms": 1000 * over[-1],
        "p99_ms": 1000 * over[min(len(over) - 1, int(0.99 * len(over)))],
        "p50_ms": 1000 * over[len(over) // 2],
    }


async def run(args: argparse.Namespace, sim: Simulator) -> dict[str, Any]:
    n = args.tasks
    limits = evo.Limits(max_in_flight=n, requests_per_second=None)
    poll = evo.PollPolicy(batch=True)
    sleeper = Sleeper()
    rss_samples: list[tuple[float, int, int, int]] = []  # (time, submitted, done, VmRSS)
    marks: dict[str, float] = {}
    async with evo.AsyncClient(sim.key, base_url=sim.url, poll=poll, limits=limits) as client:
        # Warm-up: imports, generated hooks, connections; tasks of 0.2 s.
        warm = prompts(50, "[duration:0.2] [eta:1] warm-up")
        async with client.generate_many(warm, max_in_flight=50) as warm_run:
            async for _ in warm_run:
                pass
        gc.collect()
        async with anyio.create_task_group() as tg:
            tg.start_soon(sleeper.run)
            marks["idle"] = time.perf_counter()
            await anyio.sleep(args.idle)
            rss_before = proc_status("self", "VmRSS")
            marks["start"] = time.perf_counter()
            done = 0
            failed = 0
            server_running: int | None = None
            async with client.generate_many(prompts(n), max_in_flight=n) as batch:

                async def sample() -> None:
                    nonlocal server_running
                    while True:
                        s = batch.stats
                        rss_samples.append((time.perf_counter(), s.submitted, s.done, proc_status("self", "VmRSS")))
                        if "full" not in marks and s.submitted >= n and s.done == 0:
                            marks["full"] = time.perf_counter()
                            stats = await anyio.to_thread.run_sync(sim.stats)
                            server_running = stats["running"] if stats else None
                        if args.stop_when_full and "full" in marks and time.perf_counter() - marks["full"] > 1.0:
                            marks["end"] = time.perf_counter()
                            tg.cancel_scope.cancel()
                            return
                        await anyio.sleep(args.sample_every)

                tg.start_soon(sample)
                async for outcome in batch:
                    if done == 0:
                        marks["first_outcome"] = time.perf_counter()
                    done += 1
                    failed += not outcome.ok
            marks["end"] = time.perf_counter()
            tg.cancel_scope.cancel()
    full = marks.get("full")
    in_flight_rss = [rss for t, sub, d, rss in rss_samples if sub >= n and d == 0]
    rss_full = max(in_flight_rss) if in_flight_rss else None
    end = marks["end"]
    first = marks.get("first_outcome", end)
    phases = {
        "idle (baseline)": summary(sleeper.window(marks["idle"], marks["start"])),
        "whole batch": summary(sleeper.window(marks["start"], end)),
        "ramp": summary(sleeper.window(marks["start"], full if full else end)),
        "in flight": summary(sleeper.window(full, first)) if full else summary([]),
        "completing": summary(sleeper.window(first, end)) if full else summary([]),
    }
    return {
        "tasks": n,
        "done": done,
        "failed": failed,
        "stopped_early": args.stop_when_full,
        "ramp_s": (full - marks["start"]) if full else None,
        "wall_s": end - marks["start"],
        "server_running_when_full": server_running,
        "rss_before": rss_before,
        "rss_full": rss_full,
        "rss_max": max(rss for *_, rss in rss_samples) if rss_samples else None,
        "rss_samples_full": len(in_flight_rss),
        "rss_per_task": (rss_full - rss_before) / n if rss_full is not None else None,
        "stalls": phases,
    }


def report(r: dict[str, Any]) -> bool:
    n = r["tasks"]
    print()
    print(f"{'phase':<16} {'ticks':>6} {'max stall':>10} {'p99':>9} {'p50':>9}")
    print("-" * 54)
    for name, s in r["stalls"].items():
        if not s["ticks"]:
            print(f"{name:<16} {0:>6} {'-':>10} {'-':>9} {'-':>9}")
            continue
        print(f"{name:<16} {s['ticks']:>6} {s['max_ms']:>8.1f}ms {s['p99_ms']:>7.1f}ms {s['p50_ms']:>7.2f}ms")
    print()
    if r["ramp_s"] is None:
        print(f"the {n} tasks were never all in flight at once")
    else:
        print(
            f"all {n} in flight after {r['ramp_s']:.1f} s (server's running count then: "
            f"{r['server_running_when_full']}); {r['done']} outcomes ({r['failed']} not ok) in {r['wall_s']:.1f} s"
            + (" (stopped once full)" if r["stopped_early"] else "")
        )
    if r["rss_full"] is not None:
        print(
            f"RSS: {r['rss_before'] / MB:.1f} MB before the batch (baseline) -> {r['rss_full'] / MB:.1f} MB with "
            f"{n} in flight ({r['rss_full'] / r['rss_before']:.2f}x; max {r['rss_max'] / MB:.1f} MB during the run, "
            f"{r['rss_samples_full']} samples while all were in flight)"
        )
    whole, idle = r["stalls"]["whole batch"], r["stalls"]["idle (baseline)"]
    per_task = r["rss_per_task"]
    checks = [
        (
            whole["max_ms"] <= 1000 * MAX_STALL_TARGET,
            f"max stall {whole['max_ms']:.0f} ms (idle: {idle['max_ms']:.1f} ms, "
            f"{whole['max_ms'] / max(idle['max_ms'], 0.01):.0f}x)  target <= {1000 * MAX_STALL_TARGET:.0f} ms",
        ),
        (
            whole["p99_ms"] <= 1000 * P99_STALL_TARGET,
            f"p99 stall {whole['p99_ms']:.1f} ms (idle: {idle['p99_ms']:.1f} ms, "
            f"{whole['p99_ms'] / max(idle['p99_ms'], 0.01):.0f}x)  target <= {1000 * P99_STALL_TARGET:.0f} ms",
        ),
        (
            per_task is not None and per_task <= RSS_PER_TASK_TARGET,
            "RSS per in-flight task: "
            + (f"{per_task / KB:.1f} KB" if per_task is not None else "NOT MEASURED")
            + f"  target <= {RSS_PER_TASK_TARGET / KB:.0f} KB",
        ),
    ]
    if not r["stopped_early"] and (r["done"] != n or r["failed"]):
        checks.append((False, f"{n - r['done'] + r['failed']} tasks did not complete"))
    for ok, text in checks:
        print(f"  {'ok  ' if ok else 'MISS'} {text}")
    return all(ok for ok, _ in checks)


def main(args: argparse.Namespace) -> int:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress lines when piped
    if args.quick:
        args.tasks, args.min_duration, args.max_duration, args.eta = 2000, 2.5, 3.0, 3
    print(
        f"{args.tasks} tasks of {args.min_duration:g}-{args.max_duration:g} s (estimated_time {args.eta}) through "
        f"generate_many(max_in_flight={args.tasks}), Limits(max_in_flight={args.tasks}, requests_per_second=None), "
        "PollPolicy(batch=True); simulator in its own process; 10 ms sleeper in the client's loop",
        flush=True,
    )
    with Simulator(duration=args.min_duration, duration_max=args.max_duration, eta=args.eta, seed=args.seed) as sim:
        result = anyio.run(run, args, sim)
    ok = report(result)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    if args.quick and not args.targets:
        print("quick slice: figures only, targets not applied")
        return 0
    print("targets met" if ok else "TARGETS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=20_000, help="inputs, all in flight (default %(default)s)")
    parser.add_argument("--min-duration", type=float, default=25.0, help="shortest task (s, default %(default)s)")
    parser.add_argument("--max-duration", type=float, default=30.0, help="longest task (s, default %(default)s)")
    parser.add_argument("--eta", type=int, default=27, help="reported estimated_time (default %(default)s)")
    parser.add_argument("--idle", type=float, default=2.0, help="idle baseline of the sleeper (s)")
    parser.add_argument("--sample-every", type=float, default=0.1, help="VmRSS sampling period (s)")
    parser.add_argument("--stop-when-full", action="store_true", help="cancel the batch once all are in flight")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="2,000 short tasks; exits 0 unless --targets")
    parser.add_argument("--targets", action="store_true", help="with --quick: apply the targets anyway")
    parser.add_argument("--json", help="also write the result to this file")
    sys.exit(main(parser.parse_args()))
