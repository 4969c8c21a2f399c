"""User code without an event loop: the sync ``Client`` (see results.py for how the
``# type: ignore[...]  # pyright: ignore[...]`` lines work)."""

from __future__ import annotations

from pathlib import Path

import evolink_async as evo


def a_script() -> None:
    with evo.Client(limits=evo.Limits(max_in_flight=4)) as client:
        same: evo.Client = client
        task: evo.Task = client.generate("a watercolor fox", size="16:9", quality="2K")
        created: evo.Task = client.submit(evo.VideoRequest("a wave", model="veo3.1-fast"))
        read: evo.Task = client.get_task(created.id)
        final: evo.Task = client.wait(read, timeout=600, raise_on_failure=False)
        paths: list[Path] = client.download(task, "out")
        balance: evo.Credits = client.credits()
        uploaded: evo.UploadedFile = client.upload(Path("photo.png"))
        quota: evo.FileQuota = client.files.quota()
        client.files.delete(uploaded)
        print(same, final.status, paths, balance.remaining, quota.max_files)
        for outcome in client.generate_many(["a cat", "a dog"], download_to="out"):
            one: evo.Outcome = outcome
            print(one.index, one.ok, one.files)
        outcomes: list[evo.Outcome] = client.generate_all(["a cat"])
        print(outcomes)

        # No await in the sync face: its calls return values, not coroutines.
        pending: evo.Task = client.generate("x")
        print(pending)
        client.generate("x", size="16:10")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
        client.wait(read, timeout="soon")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
        client.upload(42)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
        _url: int = client.generate("x").results[0]  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
        for outcome in client.generate_many(["a cat"]):
            _id = outcome.task.id  # type: ignore[union-attr]  # pyright: ignore[reportOptionalMemberAccess]


async def not_in_async_code(client: evo.Client) -> None:
    # The sync client's results are not awaitable.
    await client.generate("x")  # type: ignore[misc]  # pyright: ignore[reportGeneralTypeIssues]
