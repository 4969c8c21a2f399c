"""A worker of a shared batch: ``python shared_batch_worker.py BASE_URL KEY REDIS_URL NAME N``.

Runs the same N ordered inputs as its fellow workers through ``coordinator.journal(NAME)``, printing one line
per outcome it reports (``outcome INDEX ok|ERROR``) and ``finished`` at the end.
"""

from __future__ import annotations

import sys

import anyio

import evolink_async as evo
from evolink_async.redis import RedisCoordinator

LIMITS = evo.Limits(max_in_flight=6, requests_per_second=None)
POLL = evo.PollPolicy(min_interval=0.05, batch=False)


async def main(base_url: str, key: str, redis_url: str, name: str, count: int) -> None:
    coordinator = RedisCoordinator(redis_url, namespace="batch-test", lease_seconds=1.5)
    inputs = [f"[duration:0.5] input {i}" for i in range(count)]
    async with evo.AsyncClient(key, base_url=base_url, limits=LIMITS, poll=POLL, coordinator=coordinator) as client:
        async with client.generate_many(inputs, journal=coordinator.journal(name)) as run:
            async for outcome in run:
                status = "ok" if outcome.ok else type(outcome.error).__name__
                print("outcome", outcome.index, status, flush=True)
        print("finished skipped", run.stats.skipped, flush=True)


if __name__ == "__main__":
    base, key, url, name, n = sys.argv[1:6]
    anyio.run(main, base, key, url, name, int(n))
