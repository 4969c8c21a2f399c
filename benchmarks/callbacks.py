"""Callback-first waiting: API reads per task and detection lag, beside plain polling, in the same run.

The simulator delivers EvoLink's completion callbacks over real HTTPS (a trustme certificate) to the client's
receiver on loopback. Three scenarios over the same task durations (uniform around ``estimated_time``):

- polling only (no callback_url): the shared poller as in benchmarks/polling.py;
- callbacks on: each task should cost one read — the receiver's confirmation — and be seen right after its
  callback arrives;
- callbacks lost (the simulator never delivers): every task must still complete, through the safety net.

    python benchmarks/callbacks.py                   # 200 tasks, estimated_time 5 s
    python benchmarks/callbacks.py --tasks 500 --estimate 10

Target (issue 4): callbacks on, <= 1.2 API reads per task; detection lag bounded by delivery plus one read.
"""

from __future__ import annotations

import argparse
import random
import ssl
import statistics
import sys
import time
from typing import Any

import anyio
import trustme
from aiohttp import web

import evolink_async as evo
from evolink_async.testing import FakeEvolink, TaskPlan


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1)))]


async def scenario(name: str, args: argparse.Namespace, *, callbacks: bool, lose: bool) -> dict[str, Any]:
    rng = random.Random(args.seed)
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    trust_ctx = ssl.create_default_context()
    ca.configure_trust(trust_ctx)

    def plan(body: Any) -> TaskPlan:
        spread = args.spread
        return TaskPlan(duration=args.estimate * rng.uniform(1 - spread, 1 + spread), estimated_time=args.estimate)

    async with FakeEvolink(plan=plan, initial_credits=1e9, callback_ssl=trust_ctx, allow_local_callbacks=True) as fake:
        fake.lose_callbacks = lose
        holder: dict[str, evo.AsyncClient] = {}

        async def receive(request: web.Request) -> web.Response:
            return await holder["client"].callbacks.aiohttp_handler(request)

        app = web.Application()
        app.router.add_post("/evolink/callback", receive)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
        await site.start()
        port = runner.addresses[0][1]
        callback_url = f"https://127.0.0.1:{port}/evolink/callback" if callbacks else None
        limits = evo.Limits(max_in_flight=args.tasks, requests_per_second=None)
        seen: dict[str, float] = {}
        try:
            async with evo.AsyncClient(
                fake.api_key,
                base_url=fake.base_url,
                limits=limits,
                callback_url=callback_url,
                allow_local_callback_url=True,
            ) as client:
                holder["client"] = client

                async def one(i: int) -> None:
                    task = await client.generate(f"callback benchmark {i}")
                    seen[task.id] = time.monotonic()

                async with anyio.create_task_group() as tg:
                    for i in range(args.tasks):
                        tg.start_soon(one, i)
        finally:
            await runner.cleanup()
        delivered: dict[str, float] = {}
        for record in fake.stats.callback_log:
            if record.delivered:
                delivered.setdefault(record.task_id, record.time)
        lags = [seen[t] - fake.tasks[t].finish_at for t in seen]
        after_callback = [seen[t] - delivered[t] for t in seen if t in delivered]
        status_requests = fake.stats.read_requests + fake.stats.batch_requests
        return {
            "scenario": name,
            "tasks": len(seen),
            "reads_per_task": sum(fake.stats.reads.values()) / len(seen),
            "requests_per_task": status_requests / len(seen),
            "median_lag": statistics.median(lags),
            "p99_lag": pct(lags, 0.99),
            "callbacks_delivered": fake.stats.callbacks_delivered,
            "seen_after_callback_p50": statistics.median(after_callback) if after_callback else None,
            "seen_after_callback_p99": pct(after_callback, 0.99) if after_callback else None,
        }


def show(rows: list[dict[str, Any]]) -> None:
    head = (
        f"{'scenario':<16} {'tasks':>5} {'reads/task':>10} {'status req/task':>15} {'median lag':>10} "
        f"{'p99 lag':>8} {'callbacks':>9} {'seen-after-callback p50/p99':>28}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        after = (
            f"{r['seen_after_callback_p50'] * 1000:.1f} / {r['seen_after_callback_p99'] * 1000:.1f} ms"
            if r["seen_after_callback_p50"] is not None
            else "-"
        )
        print(
            f"{r['scenario']:<16} {r['tasks']:>5} {r['reads_per_task']:>10.2f} {r['requests_per_task']:>15.3f} "
            f"{r['median_lag']:>9.2f}s {r['p99_lag']:>7.2f}s {r['callbacks_delivered']:>9} {after:>28}"
        )


async def main(args: argparse.Namespace) -> int:
    print(f"{args.tasks} tasks, estimated_time {args.estimate} s, durations +/-{args.spread:.0%}\n", flush=True)
    rows = [
        await scenario("polling only", args, callbacks=False, lose=False),
        await scenario("callbacks on", args, callbacks=True, lose=False),
        await scenario("callbacks lost", args, callbacks=True, lose=True),
    ]
    show(rows)
    polling, on, lost = rows
    print()
    print(
        f"callbacks on: {on['reads_per_task']:.2f} API reads per task "
        f"({on['reads_per_task'] / polling['reads_per_task']:.2f}x polling), target <= 1.2; "
        f"seen {on['seen_after_callback_p50'] * 1000:.1f} ms (median) after the callback arrived"
    )
    print(
        f"callbacks lost: {lost['tasks']}/{args.tasks} tasks still completed through the safety net, "
        f"median lag {lost['median_lag']:.1f} s"
    )
    ok = on["reads_per_task"] <= 1.2 and lost["tasks"] == args.tasks and on["tasks"] == args.tasks
    print("targets met" if ok else "TARGETS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--estimate", type=int, default=5)
    parser.add_argument("--spread", type=float, default=0.4)
    parser.add_argument("--seed", type=int, default=3)
    sys.exit(anyio.run(main, parser.parse_args()))
