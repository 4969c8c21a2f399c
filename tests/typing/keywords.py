"""User code that a type checker must judge (not a test module: pytest never imports this file).

``tests/test_typing.py`` runs ``mypy --strict --warn-unused-ignores`` and pyright (strict, with
``reportUnnecessaryTypeIgnoreComment``) on it and expects both to pass (``tests/test_api_defects.py`` runs
mypy on it too). Each ``# type: ignore[...]  # pyright: ignore[...]`` below marks a line that must be
rejected: were it accepted, the ignore would be unused and the checker would fail. The other lines must
type-check as they are.
"""

from __future__ import annotations

import evolink_async as evo


async def keyword_fields_are_typed(client: evo.AsyncClient) -> None:
    # Fine: known request fields with values of their types, positional prompt or the openai-style keyword.
    done: evo.Task = await client.generate("x", size="16:9", quality="2K")
    done = await client.generate(prompt="a cat", size="16:9", model="gemini-3-pro-image-preview")
    done = await client.generate(evo.ImageRequest("x"), size="1:1")
    created: evo.Task = await client.submit("x", size="16:9", quality="2K")
    created = await client.submit(prompt="a cat", quality="1K")
    print(done, created)

    # A misspelled field name is an unexpected keyword.
    await client.generate("x", sise="16:9")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    await client.submit("x", sise="16:9")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]

    # A size must be a string (a known one, or a str for models the SDK does not know), never an int.
    await client.generate("x", size=169)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    await client.submit("x", size=169)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


def the_sync_client_is_typed_alike(client: evo.Client) -> None:
    done: evo.Task = client.generate("x", size="16:9", quality="2K")
    created: evo.Task = client.submit(prompt="a cat", quality="1K")
    print(done, created)
    client.generate("x", sise="16:9")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    client.submit("x", size=169)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


async def every_kind_and_local_files_are_typed(client: evo.AsyncClient, sync: evo.Client) -> None:
    from pathlib import Path

    video = evo.VideoRequest("x", model="veo3.1-fast", duration=5, image_urls=[Path("ref.png"), b"\x89PNG"])
    song = evo.AudioRequest("x", model="suno-v5", vocal_gender="f", custom_mode=True, style="pop", title="t")
    done: evo.Task = await client.generate(video)
    done = await client.generate(song)
    done = await client.generate("edit", image_urls=[Path("ref.png"), "https://example.com/a.png"])
    items: tuple[evo.ResultItem, ...] = done.result_data
    uploaded: evo.UploadedFile = await client.upload(Path("ref.png"))
    quota: evo.FileQuota = await client.files.quota()
    page: evo.FilePage = sync.files.list(page_size=5)
    synced: evo.UploadedFile = sync.upload(b"\x89PNG")
    print(done, items, uploaded, quota, page, synced)
    evo.VideoRequest("x")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    evo.AudioRequest("x", model="suno-v5", vocal_gender="x")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    await client.upload(42)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
