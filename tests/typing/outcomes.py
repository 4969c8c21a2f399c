"""User code that runs a batch: ``generate_many``'s outcomes, its live ``BatchStats``, ``generate_all`` (see
results.py for how the ``# type: ignore[...]  # pyright: ignore[...]`` lines work)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import evolink_async as evo


def prompts() -> Iterator[str]:
    yield from ("a cat", "a dog")


async def more_prompts() -> AsyncIterator[evo.ImageRequest]:
    yield evo.ImageRequest("a fox", size="16:9")


async def a_batch(client: evo.AsyncClient) -> None:
    mixed: list[str | evo.Request | dict[str, Any]] = [
        "a prompt",
        evo.ImageRequest("an owl"),
        evo.VideoRequest("a wave", model="veo3.1-fast"),
        {"type": "audio", "prompt": "a jingle", "model": "suno-v5"},
    ]
    async with client.generate_many(mixed, download_to="out", journal="batch.sqlite", budget=100.0) as run:
        batch: evo.BatchRun = run
        async for outcome in batch:
            index: int = outcome.index
            ok: bool = outcome.ok
            files: tuple[Path, ...] = outcome.files
            task: evo.Task | None = outcome.task
            error: Exception | None = outcome.error
            task_id: str | None = outcome.task_id
            resumed: bool = outcome.resumed
            print(index, ok, files, task_id, resumed, outcome.input, outcome.request)
            if task is not None:
                print(task.results)
            if isinstance(error, evo.TaskFailedError):
                print(error.code)
            stats: evo.BatchStats = run.stats
            done: int = stats.done
            counts = (stats.completed, stats.failed, stats.not_submitted, stats.in_flight, stats.submitted)
            spent: float = stats.committed_credits
            print(done, counts, spent)

            # An outcome's task may be missing (not submitted) and its files are a tuple of paths.
            _results = outcome.task.results  # type: ignore[union-attr]  # pyright: ignore[reportOptionalMemberAccess]
            _names: list[str] = outcome.files  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
            outcome.index = 0  # type: ignore[misc]  # pyright: ignore[reportAttributeAccessIssue]

    async with client.generate_many(more_prompts(), max_in_flight=4, size="1:1", quality="2K") as run:
        async for outcome in run:
            print(outcome.ok)


async def collected(client: evo.AsyncClient) -> None:
    outcomes: list[evo.Outcome] = await client.generate_all(prompts(), size="16:9", timeout=600)
    print([outcome.files for outcome in outcomes if outcome.ok])
    # Batch-wide fields are typed like generate's keywords; the options are named.
    client.generate_many(prompts(), sise="16:9")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    client.generate_many(prompts(), quality="3K")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    client.generate_many(prompts(), budget="ten")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    client.generate_many(42)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    # generate_many is no coroutine: it is entered with `async with`, not awaited.
    await client.generate_many(prompts())  # type: ignore[misc]  # pyright: ignore[reportGeneralTypeIssues]
