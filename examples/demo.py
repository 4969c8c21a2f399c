"""A tour of evolink_async on the built-in simulator: no key, no network.

    make demo          (or: python examples/demo.py)

Twenty prompts are fanned out through one client with at most 8 in flight; the simulator fails a few of them
and answers some requests with 429 and 503, which the client absorbs. Each outcome is printed as it lands.
"""

from __future__ import annotations

import random
import time

import anyio

import evolink_async as evo
from evolink_async.testing import FakeEvolink, Fault, TaskPlan, directive_plan

PROMPTS = [
    "a lighthouse at dusk, oil painting",
    "a red fox in fresh snow",
    "isometric city block at night, neon",
    "a bowl of ramen, studio lighting",
    "a paper boat on a puddle [fail:content_policy_violation]",
    "an astronaut tending a greenhouse",
    "a watercolor map of an imaginary island",
    "a cat playing on grass",
    "a steam locomotive crossing a viaduct",
    "macro photo of a dew drop on a leaf [fail:service_error]",
    "a cozy reading nook with rain outside",
    "a minimalist poster of a mountain range",
    "a koi pond seen from above",
    "a robot barista pouring latte art [cancel]",
    "a desert caravan under the milky way",
    "a stained glass owl",
    "a bonsai tree in a storm",
    "a retro arcade cabinet, product shot",
    "a hot air balloon over tulip fields",
    "a cathedral made of ice",
]


async def main() -> None:
    rng = random.Random(7)

    def plan(body: dict[str, object]) -> TaskPlan:
        # Durations spread around a 2 s estimate, like real generations spread around estimated_time.
        duration = rng.uniform(1.0, 3.0)
        return directive_plan(body, default_duration=duration)

    async with FakeEvolink(plan=plan) as fake:
        fake.inject(Fault(route="create", kind="status", status=429, retry_after="1", times=2))
        fake.inject(Fault(route="batch", kind="status", status=503))
        limits = evo.Limits(max_in_flight=8, requests_per_second=20)
        print(f"simulator at {fake.base_url}; {len(PROMPTS)} prompts, at most {limits.max_in_flight} in flight\n")
        started = time.monotonic()
        done = failed = 0
        async with evo.AsyncClient(fake.api_key, base_url=fake.base_url, limits=limits) as client:

            async def one(prompt: str) -> None:
                nonlocal done, failed
                shown = prompt.split(" [")[0]
                try:
                    task = await client.generate(prompt, size="16:9", quality="1K")
                except evo.TaskFailedError as exc:
                    failed += 1
                    print(f"  x {shown:<45} {exc.task.status.value}: {exc.code} (retryable={exc.retryable})")
                else:
                    done += 1
                    print(f"  + {shown:<45} {task.results[0]}")

            async with anyio.create_task_group() as tg:
                for prompt in PROMPTS:
                    tg.start_soon(one, prompt)
            credits = await client.credits()
        elapsed = time.monotonic() - started
        stats = fake.stats
        print(
            f"\n{done} completed, {failed} failed in {elapsed:.1f} s; "
            f"server saw {stats.creates} tasks created ({stats.create_requests} create requests, "
            f"{stats.rate_limited} answered 429), peak {stats.max_running} running, "
            f"{stats.read_requests + stats.batch_requests} status requests for {sum(stats.reads.values())} reads; "
            f"{credits.remaining:.1f} credits left"
        )


if __name__ == "__main__":
    anyio.run(main)
