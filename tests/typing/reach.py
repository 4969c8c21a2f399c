"""User code for what peers' users reach for: the task listing after a crash, results in memory, named batch
inputs, explicit retries, server hints, the one-liner, a receiver bound at startup (see results.py for how the
``# type: ignore[...]  # pyright: ignore[...]`` lines work)."""

from __future__ import annotations

from datetime import UTC, datetime

import evolink_async as evo


async def recover_after_a_crash(client: evo.AsyncClient, started: datetime) -> list[evo.Task]:
    found: list[evo.Task] = []
    listing: evo.TaskListing = client.tasks.list(since=started, status=evo.TaskStatus.PROCESSING, page_size=100)
    async for item in listing:
        summary: evo.TaskSummary = item
        created: datetime | None = summary.created_at
        print(created, summary.model, summary.raw_status, listing.pages_read)
        found.append(await client.wait(summary.id, raise_on_failure=False))
    client.tasks.list(since="yesterday")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    return found


async def results_in_memory(client: evo.AsyncClient, task: evo.Task) -> bytes:
    picture: bytes = await client.result_bytes(task, 0)
    async with client.stream_result(task, chunk_size=1 << 20) as stream:
        kind: str = stream.content_type
        size: int | None = stream.size
        print(kind, size)
        async for chunk in stream:
            picture += chunk
    await client.result_bytes(task.id)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    return picture


async def named_inputs_retried(client: evo.AsyncClient) -> None:
    inputs = [{"custom_id": "cover", "prompt": "a lighthouse"}]
    async with client.generate_many(inputs, retry_failed=2, retry_delay=30.0, budget=100) as run:
        async for outcome in run:
            name: str | None = outcome.custom_id
            earlier: tuple[evo.Task, ...] = outcome.earlier
            print(name, [t.id for t in earlier], run.stats.retried, run.stats.replayed)


async def server_hints(client: evo.AsyncClient) -> None:
    try:
        task = await client.submit("a cat")
    except evo.APIError as err:
        hint: str | None = err.fallback_suggestion
        print(hint)
    else:
        request_id: str | None = task.request_id
        replayed: bool = task.replayed
        print(request_id, replayed)


def a_script() -> None:
    task: evo.Task = evo.generate("a watercolor fox", size="16:9")
    print(task.results, datetime.now(UTC))
    evo.generate("a fox", size="16:10")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


def a_sync_app(client: evo.Client, body: bytes) -> tuple[int, dict[str, str]]:
    for item in client.tasks.list(limit=10):
        print(item.id)
    return client.callbacks.handle(body)


async def bound_at_startup(endpoint: evo.CallbackEndpoint, client: evo.AsyncClient) -> None:
    endpoint.bind(client.callbacks)
    status, answer = endpoint.handle(b"{}")
    print(status, answer)
    endpoint.bind(client)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
