"""Polling cost: the SDK's shared poller beside a fixed-3-second poller, in the same run, on the simulator.

Task durations are spread uniformly around the ``estimated_time`` the simulator reports. For every task we
record, on the server's side, how many status reads it cost and how many polling requests were made, and,
on the client's side, the detection lag: when the waiter returned minus when the task really finished.

    python benchmarks/polling.py                      # defaults: estimate 10 s, 100 per-task, 500 batch
    python benchmarks/polling.py --estimate 45 --tasks 50 --batch-tasks 500

Targets (issue 2): per-task mode <= 3 status reads per task on average with median lag <= 10 % of the
task's duration; batch mode with 500 tasks in flight <= 0.1 polling requests per task.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from typing import Any

import aiohttp
import anyio

import evolink_async as evo
from evolink_async.testing import FakeEvolink, TaskPlan


def spread_plan(estimate: int, spread: float, rng: random.Random) -> Any:
    def plan(body: Any) -> TaskPlan:
        return TaskPlan(duration=estimate * rng.uniform(1 - spread, 1 + spread), estimated_time=estimate)

    return plan


def summarise(name: str, fake: FakeEvolink, detected: dict[str, float]) -> dict[str, Any]:
    n = len(detected)
    ratios = []
    lags = []
    for task_id, seen_at in detected.items():
        sim = fake.tasks[task_id]
        lag = max(0.0, seen_at - sim.finish_at)
        lags.append(lag)
        ratios.append(lag / sim.plan.duration)
    poll_requests = fake.stats.read_requests + fake.stats.batch_requests
    ratios.sort()
    return {
        "scenario": name,
        "tasks": n,
        "reads_per_task": sum(fake.stats.reads.values()) / n,
        "poll_requests_per_task": poll_requests / n,
        "median_lag_s": statistics.median(lags),
        "median_lag_ratio": statistics.median(ratios),
        "p90_lag_ratio": ratios[int(0.9 * (n - 1))],
    }


async def run_sdk(n: int, estimate: int, spread: float, batch: bool, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    async with FakeEvolink(plan=spread_plan(estimate, spread, rng), initial_credits=1e9) as fake:
        detected: dict[str, float] = {}
        poll = evo.PollPolicy(batch=None if batch else False)
        limits = evo.Limits(max_in_flight=n, requests_per_second=None, max_connections=64)
        async with evo.AsyncClient(fake.api_key, base_url=fake.base_url, poll=poll, limits=limits) as client:

            async def one(i: int) -> None:
                task = await client.generate(f"benchmark prompt {i}")
                detected[task.id] = time.monotonic()

            async with anyio.create_task_group() as tg:
                for i in range(n):
                    tg.start_soon(one, i)
        return summarise("sdk batch" if batch else "sdk per-task", fake, detected)


async def run_fixed(n: int, estimate: int, spread: float, interval: float, seed: int) -> dict[str, Any]:
    """What EvoLink's own client does: sleep a fixed interval, GET, repeat."""
    rng = random.Random(seed)
    async with FakeEvolink(plan=spread_plan(estimate, spread, rng), initial_credits=1e9) as fake:
        detected: dict[str, float] = {}
        headers = {"Authorization": f"Bearer {fake.api_key}"}
        connector = aiohttp.TCPConnector(limit=64)
        async with aiohttp.ClientSession(fake.base_url, headers=headers, connector=connector) as session:

            async def one(i: int) -> None:
                body = {"model": evo.DEFAULT_MODEL, "prompt": f"benchmark prompt {i}"}
                async with session.post("/v1/images/generations", json=body) as resp:
                    task_id = (await resp.json())["id"]
                while True:
                    await anyio.sleep(interval)
                    async with session.get(f"/v1/tasks/{task_id}") as resp:
                        status = (await resp.json())["status"]
                    if status in ("completed", "failed", "cancelled"):
                        detected[task_id] = time.monotonic()
                        return

            async with anyio.create_task_group() as tg:
                for i in range(n):
                    tg.start_soon(one, i)
        return summarise(f"fixed {interval:g} s", fake, detected)


def print_table(rows: list[dict[str, Any]]) -> None:
    header = (
        f"{'scenario':<16} {'tasks':>5} {'reads/task':>10} {'poll req/task':>13} "
        f"{'median lag':>10} {'lag/dur p50':>11} {'lag/dur p90':>11}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['scenario']:<16} {r['tasks']:>5} {r['reads_per_task']:>10.2f} {r['poll_requests_per_task']:>13.3f} "
            f"{r['median_lag_s']:>9.2f}s {r['median_lag_ratio']:>10.1%} {r['p90_lag_ratio']:>10.1%}"
        )


async def main(args: argparse.Namespace) -> int:
    rows: list[dict[str, Any]] = []
    print(f"estimated_time {args.estimate} s, durations uniform in +/-{args.spread:.0%} of it\n", flush=True)
    fixed_small = await run_fixed(args.tasks, args.estimate, args.spread, 3.0, args.seed)
    sdk_small = await run_sdk(args.tasks, args.estimate, args.spread, False, args.seed)
    fixed_big = await run_fixed(args.batch_tasks, args.estimate, args.spread, 3.0, args.seed)
    sdk_big = await run_sdk(args.batch_tasks, args.estimate, args.spread, True, args.seed)
    rows = [fixed_small, sdk_small, fixed_big, sdk_big]
    for interval in args.also_fixed:
        # More fixed pollers for the plot (benchmarks/plot.py): the cost/lag curve the SDK is measured against.
        rows.append(await run_fixed(args.tasks, args.estimate, args.spread, interval, args.seed))
    print_table(rows)
    print()
    print(
        f"per-task mode: {sdk_small['reads_per_task']:.2f} reads/task "
        f"({sdk_small['reads_per_task'] / fixed_small['reads_per_task']:.2f}x the fixed poller's), "
        f"median lag {sdk_small['median_lag_ratio']:.1%} of duration "
        f"(fixed: {fixed_small['median_lag_ratio']:.1%})  target <= 3 reads, <= 10 %"
    )
    print(
        f"batch mode, {args.batch_tasks} in flight: {sdk_big['poll_requests_per_task']:.3f} requests/task "
        f"({sdk_big['poll_requests_per_task'] / fixed_big['poll_requests_per_task']:.3f}x the fixed poller's)"
        "  target <= 0.1"
    )
    ok = (
        sdk_small["reads_per_task"] <= 3
        and sdk_small["median_lag_ratio"] <= 0.10
        and sdk_big["poll_requests_per_task"] <= 0.1
    )
    print("targets met" if ok else "TARGETS MISSED")
    if args.json:
        await anyio.Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--estimate", type=int, default=10, help="estimated_time reported by the simulator (s)")
    parser.add_argument("--spread", type=float, default=0.4, help="durations uniform in estimate*(1 +/- spread)")
    parser.add_argument("--tasks", type=int, default=100, help="tasks in the per-task scenario")
    parser.add_argument("--batch-tasks", type=int, default=500, help="tasks in flight in the batch scenario")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument(
        "--also-fixed",
        type=lambda text: [float(x) for x in text.split(",") if x],
        default=[],
        metavar="SECONDS,...",
        help="per-task runs of more fixed pollers, e.g. 1,2,5,10 (for the plot)",
    )
    sys.exit(anyio.run(main, parser.parse_args()))
