"""A worker process of the coordinator tests: ``python coordinated_worker.py BASE_URL KEY REDIS_URL N [PROMPT]``.

Runs N tasks through one AsyncClient that shares its limits through Redis, then prints the number done. It is a
separate process on purpose: the shared limits must hold across processes, not only across clients of one.
"""

from __future__ import annotations

import sys

import anyio

import evolink_async as evo
from evolink_async.redis import RedisCoordinator

LIMITS = evo.Limits(max_in_flight=3, requests_per_second=8.0, burst=4)
POLL = evo.PollPolicy(min_interval=0.05, batch=False)


async def main(base_url: str, key: str, redis_url: str, count: int, prompt: str) -> None:
    coordinator = RedisCoordinator(redis_url, namespace="shared", lease_seconds=1.5)
    async with evo.AsyncClient(key, base_url=base_url, limits=LIMITS, poll=POLL, coordinator=coordinator) as client:
        print("ready", flush=True)
        done = 0
        async with anyio.create_task_group() as tg:

            async def one(i: int) -> None:
                nonlocal done
                await client.generate(f"{prompt} {i}")
                done += 1

            for i in range(count):
                tg.start_soon(one, i)
        print("done", done, flush=True)


if __name__ == "__main__":
    base, key, url, n = sys.argv[1:5]
    anyio.run(main, base, key, url, int(n), sys.argv[5] if len(sys.argv) > 5 else "[duration:0.4] a task")
