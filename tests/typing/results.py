"""User code that reads results: a Task, its status, result files and items, usage and errors; credits.

Checked by ``mypy --strict --warn-unused-ignores`` and by pyright in strict mode with
``reportUnnecessaryTypeIgnoreComment`` (``tests/test_typing.py``). A line ending in ``# type: ignore[code]``
(mypy) and ``# pyright: ignore[rule]`` must be rejected by both: were either checker to accept it, its ignore
would be unnecessary and the check would fail. Every other line must type-check as it is.
"""

from __future__ import annotations

from datetime import datetime

import attrs

import evolink_async as evo


async def a_completed_task(client: evo.AsyncClient) -> None:
    task = await client.generate("a lighthouse at dusk", size="16:9")
    task_id: str = task.id
    status: evo.TaskStatus = task.status
    final: bool = task.is_final and status.is_final
    raw: str = task.raw_status
    urls: tuple[str, ...] = task.results
    first: str = task.results[0]
    kind: str | None = task.type
    progress: int | None = task.progress
    estimate: float | None = task.estimated_time
    created: datetime | None = task.created_at
    print(task_id, final, raw, urls, first, kind, progress, estimate, created)
    if task.status is evo.TaskStatus.COMPLETED:
        print(task.model)
    if task.status == "completed":  # a str enum: its value compares too
        print(task.model)

    # Optional fields are optional: narrow them first.
    if task.progress is not None:
        print(task.progress + 1)
    if task.created_at is not None:
        print(task.created_at.year)
    _bumped: int = task.progress + 1  # type: ignore[operator]  # pyright: ignore[reportOptionalOperand, reportUnknownVariableType]
    print(task.created_at.year)  # type: ignore[union-attr]  # pyright: ignore[reportOptionalMemberAccess]

    # Results are a tuple of URLs (frozen, like the task): not a list, not assignable.
    as_list: list[str] = task.results  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
    task.status = evo.TaskStatus.FAILED  # type: ignore[misc]  # pyright: ignore[reportAttributeAccessIssue]
    print(as_list)

    # A changed copy is made with attrs.evolve, as with the options.
    seen: evo.Task = attrs.evolve(task, progress=100)
    print(seen)


def usage_items_and_errors(task: evo.Task) -> None:
    usage: evo.Usage | None = task.usage
    if usage is not None:
        used: float | None = usage.credits_used
        reserved: float | None = usage.credits_reserved
        cost: evo.Cost | None = usage.cost
        print(used, reserved, cost.credits if cost is not None else None)
    for item in task.result_data:
        song: evo.ResultItem = item
        file_url: str | None = song.url
        title: str | None = song.title
        seconds: float | None = song.duration
        print(file_url, title, seconds, song.image_url, song.extra.get("anything"))
    error: evo.TaskError | None = task.error
    if error is not None:
        code: str | None = error.code
        retryable: bool = error.retryable
        print(code, retryable, error.message)
    print(task.error.code)  # type: ignore[union-attr]  # pyright: ignore[reportOptionalMemberAccess]
    _nothing: str = task.result_data[0].nonexistent  # type: ignore[attr-defined]  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType, reportUnknownVariableType]


async def credits(client: evo.AsyncClient, sync: evo.Client) -> None:
    balance: evo.Credits = await client.credits()
    remaining: float | None = balance.remaining
    same: evo.Credits = sync.credits()
    print(remaining, same.used, same.key_unlimited)
    left: float = balance.remaining  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
    print(left)
