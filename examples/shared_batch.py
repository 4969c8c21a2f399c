"""One batch, run by several workers on several machines: each input created once, a dead worker's taken over.

    # on every machine (the same prompts file, the same Redis, the same batch name):
    EVOLINK_API_KEY=sk-evo-... python examples/shared_batch.py prompts.txt --redis redis://redis.internal:6379/0 \\
        --name catalog-2026-12 --out out

Each worker claims inputs under a lease; an input's Idempotency-Key is stored in Redis before its create, so when
a worker dies its inputs are taken over by the others (after ``--lease`` seconds) without paying twice. Every
worker reports the outcomes it finished; a rerun skips what is done. Limits (pace, in-flight tasks) hold across
all workers. Try it without a key: ``python -m evolink_async.testing --port 8080`` in one shell, then
``EVOLINK_BASE_URL=http://127.0.0.1:8080 EVOLINK_API_KEY=sk-evo-simulator-key python examples/shared_batch.py ...``
in several others.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import anyio

import evolink_async as evo
from evolink_async.redis import RedisCoordinator


async def main(args: argparse.Namespace, prompts: list[str]) -> None:
    coordinator = RedisCoordinator(args.redis, namespace=args.namespace, lease_seconds=args.lease)
    limits = evo.Limits(max_in_flight=args.in_flight, requests_per_second=args.rate)
    async with evo.AsyncClient(limits=limits, coordinator=coordinator) as client:
        run = client.generate_many(prompts, journal=coordinator.journal(args.name), download_to=args.out)
        async with run:
            async for outcome in run:
                print(outcome.index, "ok" if outcome.ok else f"{type(outcome.error).__name__}: {outcome.error}")
        stats = run.stats
        print(f"this worker: {stats.completed} completed, {stats.failed} failed, {stats.skipped} done by others")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="a batch shared by several workers")
    parser.add_argument("prompts", help="a file of prompts, one per line (the same file for every worker)")
    parser.add_argument("--redis", required=True, help="redis://host:port/db shared by the workers")
    parser.add_argument("--name", required=True, help="the batch's name: the same for every worker of it")
    parser.add_argument("--namespace", default="evolink", help="the limits' namespace (one per API key)")
    parser.add_argument("--out", help="save results into this folder")
    parser.add_argument("--in-flight", type=int, default=16, help="tasks in flight across all workers")
    parser.add_argument("--rate", type=float, default=10.0, help="requests/s across all workers")
    parser.add_argument("--lease", type=float, default=15.0, help="seconds before a dead worker's inputs move")
    options = parser.parse_args()
    lines = Path(options.prompts).read_text().splitlines()
    anyio.run(main, options, [line.strip() for line in lines if line.strip()])
