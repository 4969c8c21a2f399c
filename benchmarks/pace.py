"""Reads before creates: detection lag and throughput under the client's request pace (issue 7, part 2).

The client keeps the default ``Limits()`` (10 requests/s, burst 10) except ``max_in_flight``, raised to 1,000
(on the client and on ``generate_many``) so that the pace, not the in-flight cap, is what binds. Every input
goes in at once through ``client.generate_many`` (what a user with a list of prompts writes); its tasks last
uniformly 2.4-4.2 s and report ``estimated_time`` 3. Two scenarios, each with its default ``PollPolicy`` but
for ``batch``:

- per-task reads, ``PollPolicy(batch=False)``, 40 tasks;
- batch reads, ``PollPolicy(batch=True)``, 200 tasks.

The simulator runs **in this process** (``FakeEvolink`` on loopback, sharing the event loop: at 10 requests/s
it is idle). Its clock is ``time.monotonic()``, which the benchmark reads too, so for each task:

- detection lag = (when its ``Outcome`` reached the ``async for``) - (``fake.tasks[id].finish_at``, when the
  simulator made it final), as a fraction of the task's duration: median and p95 over the tasks;
- throughput = ``n / (last outcome - start)`` tasks/s, beside the pace's limit
  ``requests_per_second / (1 + reads per task)``, reads per task counted by the server (``read_requests +
  batch_requests``, per task). The burst (10 requests at the start) lets a run go a little over the limit; the
  end of a run, when the last tasks are running and no creates are left, leaves the pace partly unused. Also
  printed: the pace's use over the run, requests sent / (burst + 10/s x wall time).

Each scenario runs ``--runs`` times (3; seeds 1, 2, 3: other durations), as 40 tasks give a noisy median: the
lags of all runs are pooled (120 and 600 tasks), the throughput ratio is the median of the runs' ratios.

Baseline, same run: the same tasks (same seed, same durations) with the pace off
(``Limits(max_in_flight=1000, requests_per_second=None)``): the lag the poller's own schedule costs. The paced
lag is printed beside it as a ratio.

Targets: median lag <= 15 % and p95 <= 60 % of the duration, in both scenarios; throughput within 10 % of the
pace's limit (>= 0.9x). Exit status 0 when all are met, 1 otherwise. ``--quick`` runs a tiny slice (10 and 30
tasks, no unpaced baseline, about 10 s), prints the same figures and exits 0 whatever they are (a smoke test
for ``make bench-quick``); ``--quick --targets`` applies the targets to it anyway.

    python benchmarks/pace.py                  # both scenarios x 3 runs, paced and unpaced (about 2 minutes)
    python benchmarks/pace.py --quick
    python benchmarks/pace.py --tasks 40 --batch-tasks 500 --json pace.json
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from typing import Any

import anyio

import evolink_async as evo
from evolink_async.testing import FakeEvolink, TaskPlan

MEDIAN_TARGET = 0.15
P95_TARGET = 0.60
THROUGHPUT_TARGET = 0.90
CREATE_PATH = "/v1/images/generations"


def uniform_plan(lo: float, hi: float, estimate: int, rng: random.Random) -> Any:
    def plan(body: Any) -> TaskPlan:
        return TaskPlan(duration=rng.uniform(lo, hi), estimated_time=estimate)

    return plan


def quantile(sorted_values: list[float], q: float) -> float:
    """The nearest-rank quantile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))]


async def run_scenario(
    args: argparse.Namespace, name: str, n: int, batch: bool, paced: bool, seed: int
) -> dict[str, Any]:
    rng = random.Random(seed)
    plan = uniform_plan(args.min_duration, args.max_duration, args.estimate, rng)
    limits = evo.Limits(max_in_flight=args.max_in_flight)
    if not paced:
        limits = evo.Limits(max_in_flight=args.max_in_flight, requests_per_second=None)
    poll = evo.PollPolicy(batch=batch)
    seen: dict[str, float] = {}
    failed = 0
    async with (
        FakeEvolink(plan=plan, initial_credits=1e9) as fake,
        evo.AsyncClient(fake.api_key, base_url=fake.base_url, poll=poll, limits=limits) as client,
    ):
        start = time.monotonic()
        prompts = (f"pace benchmark prompt {i}" for i in range(n))
        async with client.generate_many(prompts, max_in_flight=args.max_in_flight) as run:
            async for outcome in run:
                now = time.monotonic()
                if outcome.ok and outcome.task is not None:
                    seen[outcome.task.id] = now
                else:
                    failed += 1
        stats = fake.stats
        ratios: list[float] = []
        lags: list[float] = []
        for task_id, at in seen.items():
            sim = fake.tasks[task_id]
            lag = max(0.0, at - sim.finish_at)
            lags.append(lag)
            ratios.append(lag / sim.plan.duration)
        create_times = [r.time for r in stats.requests_seen if r.method == "POST" and r.path == CREATE_PATH]
        poll_requests = stats.read_requests + stats.batch_requests
        requests = stats.requests
    ratios.sort()
    times = sorted(seen.values())
    reads_per_task = poll_requests / n
    rps = limits.requests_per_second
    limit = rps / (1 + reads_per_task) if rps else float("nan")
    wall = times[-1] - start if times else float("nan")
    return {
        "scenario": name,
        "run": f"#{seed - args.seed + 1}",
        "paced": paced,
        "tasks": n,
        "completed": len(seen),
        "failed": failed,
        "wall_s": wall,
        "requests": requests,
        "reads_per_task": reads_per_task,
        "task_reads_per_task": sum(stats.reads.values()) / n,
        "median_lag_s": statistics.median(lags) if lags else float("nan"),
        "lag_p50": quantile(ratios, 0.5),
        "lag_p95": quantile(ratios, 0.95),
        "lag_max": ratios[-1] if ratios else float("nan"),
        "throughput": len(times) / wall if times else float("nan"),
        "limit": limit,
        "pace_use": requests / (limits.burst + rps * wall) if rps and times else float("nan"),
        "last_create_s": (max(create_times) - start) if create_times else float("nan"),
        "lag_ratios": ratios,
        "lags": sorted(lags),
    }


def pooled(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The repeats of one scenario together: lags over all their tasks, medians of the per-run figures."""
    ratios = sorted(x for r in rows for x in r["lag_ratios"])
    lags = sorted(x for r in rows for x in r["lags"])

    def median(key: str) -> float:
        return statistics.median(r[key] for r in rows)

    return {
        **{k: rows[0][k] for k in ("scenario", "paced")},
        "run": "all" if len(rows) > 1 else rows[0]["run"],
        **{k: sum(r[k] for r in rows) for k in ("tasks", "completed", "failed", "requests")},
        **{k: median(k) for k in ("wall_s", "reads_per_task", "task_reads_per_task", "throughput", "limit")},
        **{k: median(k) for k in ("pace_use", "last_create_s")},
        "throughput_ratio": statistics.median(r["throughput"] / r["limit"] for r in rows),
        "median_lag_s": statistics.median(lags) if lags else float("nan"),
        "lag_p50": quantile(ratios, 0.5),
        "lag_p95": quantile(ratios, 0.95),
        "lag_max": ratios[-1] if ratios else float("nan"),
    }


def print_table(rows: list[dict[str, Any]]) -> None:
    header = (
        f"{'scenario':<9} {'run':<3} {'pace':<8} {'tasks':>5} {'wall s':>6} {'req':>5} {'reads/task':>10} "
        f"{'lag p50':>7} {'lag p95':>7} {'lag max':>7} {'lag p50 s':>9} {'last create':>11} {'tasks/s':>7} "
        f"{'limit':>6} {'tput/limit':>10} {'pace use':>8}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        pace = "10 req/s" if r["paced"] else "off"
        ratio = r.get("throughput_ratio", r["throughput"] / r["limit"]) if r["paced"] else float("nan")
        print(
            f"{r['scenario']:<9} {r['run']:<3} {pace:<8} {r['tasks']:>5} {r['wall_s']:>6.1f} {r['requests']:>5} "
            f"{r['reads_per_task']:>10.2f} {r['lag_p50']:>7.1%} {r['lag_p95']:>7.1%} {r['lag_max']:>7.1%} "
            f"{r['median_lag_s']:>8.2f}s {r['last_create_s']:>10.1f}s {r['throughput']:>7.2f} "
            f"{r['limit']:>6.2f} {ratio:>10.2f} {r['pace_use']:>8.0%}"
        )


def verdict(paced: dict[str, Any], unpaced: dict[str, Any] | None) -> bool:
    name = paced["scenario"]
    ratio = paced["throughput_ratio"]
    base = ""
    if unpaced is not None:
        x50 = paced["lag_p50"] / max(unpaced["lag_p50"], 1e-9)
        x95 = paced["lag_p95"] / max(unpaced["lag_p95"], 1e-9)
        base = f" (unpaced: {unpaced['lag_p50']:.1%} / {unpaced['lag_p95']:.1%}; paced/unpaced {x50:.1f}x / {x95:.1f}x)"
    checks = [
        (paced["lag_p50"] <= MEDIAN_TARGET, f"median lag {paced['lag_p50']:.1%} (target <= {MEDIAN_TARGET:.0%})"),
        (paced["lag_p95"] <= P95_TARGET, f"p95 lag {paced['lag_p95']:.1%} (target <= {P95_TARGET:.0%})"),
        (
            ratio >= THROUGHPUT_TARGET,
            f"throughput {ratio:.2f}x the pace's limit (median of the runs; {paced['throughput']:.2f} tasks/s, "
            f"limit {paced['limit']:.2f} = 10 / (1 + {paced['reads_per_task']:.2f} reads/task)) "
            f"(target >= {THROUGHPUT_TARGET:.2f}x)",
        ),
        (paced["failed"] == 0, f"{paced['failed']} tasks did not complete"),
    ]
    print(f"{name}, {paced['tasks']} tasks over the runs:{base}")
    for ok, text in checks:
        print(f"  {'ok  ' if ok else 'MISS'} {text}")
    return all(ok for ok, _ in checks)


async def main(args: argparse.Namespace) -> int:
    if args.quick:
        args.tasks, args.batch_tasks, args.runs, args.no_baseline = (
            min(args.tasks, 10),
            min(args.batch_tasks, 30),
            1,
            True,
        )
    print(
        f"tasks {args.min_duration:g}-{args.max_duration:g} s (uniform), estimated_time {args.estimate}; "
        f"Limits(max_in_flight={args.max_in_flight}) otherwise default (10 requests/s, burst 10); all inputs "
        "through generate_many at once; simulator in this process",
        flush=True,
    )
    scenarios = [("per-task", args.tasks, False), ("batch", args.batch_tasks, True)]
    rows: list[dict[str, Any]] = []
    pairs: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
    for name, n, batch in scenarios:
        unpaced_runs: list[dict[str, Any]] = []
        paced_runs: list[dict[str, Any]] = []
        for k in range(args.runs):
            seed = args.seed + k
            if not args.no_baseline:
                unpaced_runs.append(await run_scenario(args, name, n, batch, paced=False, seed=seed))
                print(f"  {name:<9} #{k + 1} unpaced: {unpaced_runs[-1]['wall_s']:.1f} s", flush=True)
            paced_runs.append(await run_scenario(args, name, n, batch, paced=True, seed=seed))
            print(f"  {name:<9} #{k + 1} paced:   {paced_runs[-1]['wall_s']:.1f} s", flush=True)
        unpaced = pooled(unpaced_runs) if unpaced_runs else None
        paced = pooled(paced_runs)
        rows += unpaced_runs + paced_runs
        pairs.append((paced, unpaced))
    print()
    print_table(rows + ([p for pair in pairs for p in pair[::-1] if p is not None] if args.runs > 1 else []))
    print(
        "lag: outcome seen - task final at the simulator, as a fraction of the task's duration; reads/task: status "
        "requests (GET + batch) per task; tasks/s over the whole run; limit = 10 / (1 + reads/task); pace use: "
        "requests / (burst + 10/s x wall)"
    )
    print()
    ok = all([verdict(paced, unpaced) for paced, unpaced in pairs])
    if args.json:
        out = {"runs": rows, "pooled": [p for pair in pairs for p in pair if p is not None]}
        await anyio.Path(args.json).write_text(json.dumps(out, indent=2))
    if args.quick and not args.targets:
        print("quick slice: figures only, targets not applied")
        return 0
    print("targets met" if ok else "TARGETS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=40, help="tasks with per-task reads (default %(default)s)")
    parser.add_argument("--batch-tasks", type=int, default=200, help="tasks with batch reads (default %(default)s)")
    parser.add_argument("--min-duration", type=float, default=2.4, help="shortest task (s, default %(default)s)")
    parser.add_argument("--max-duration", type=float, default=4.2, help="longest task (s, default %(default)s)")
    parser.add_argument("--estimate", type=int, default=3, help="reported estimated_time (default %(default)s)")
    parser.add_argument("--max-in-flight", type=int, default=1000, help="client and batch (default %(default)s)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each scenario, pooled (default %(default)s)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the first run; run k uses seed + k - 1")
    parser.add_argument("--no-baseline", action="store_true", help="skip the unpaced runs")
    parser.add_argument("--quick", action="store_true", help="a tiny slice; exits 0 unless --targets")
    parser.add_argument("--targets", action="store_true", help="with --quick: apply the targets anyway")
    parser.add_argument("--json", help="also write the rows to this file")
    sys.exit(anyio.run(main, parser.parse_args()))
