"""User code for videos, songs and local files: VideoRequest, AudioRequest, uploads and the files API (see
results.py for how the ``# type: ignore[...]  # pyright: ignore[...]`` lines work)."""

from __future__ import annotations

import io
from pathlib import Path

import evolink_async as evo


async def a_video_and_a_song(client: evo.AsyncClient) -> None:
    video = evo.VideoRequest(
        "a paper boat on a river",
        model="veo3.1-fast",
        duration=8,
        quality="1080p",
        aspect_ratio="16:9",
        image_urls=[Path("first-frame.png")],
        generate_audio=True,
    )
    song = evo.AudioRequest(
        "[Verse] la la", model="suno-v4.5", custom_mode=True, style="pop", title="La", vocal_gender="m"
    )
    request: evo.Request = video
    request = song
    done: evo.Task = await client.generate(video, timeout=1800)
    sung: evo.Task = await client.generate(song)
    saved: list[Path] = await client.download(done, "out") + await client.download(sung, Path("out"))
    titles = [item.title for item in sung.result_data]
    print(request, saved, titles)

    evo.VideoRequest("x", model="veo3.1-fast", duration="8s")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    evo.VideoRequest("x", model="veo3.1-fast", generate_audio="yes")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    evo.AudioRequest("x", model="suno-v5", instrumental=1)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    evo.AudioRequest("x")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    evo.VideoRequest(prompt="x", model="m", size="16:9")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    await client.download("task-id", "out")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


async def uploads(client: evo.AsyncClient, photo: Path, data: bytes) -> None:
    uploaded: evo.UploadedFile = await client.upload(photo, file_name="photo.png")
    again = await client.upload(data)
    streamed = await client.upload(io.BytesIO(data))
    rehosted = await client.upload("https://example.com/a.png")
    url: str = uploaded.url
    expires: str | None = uploaded.expires_at
    print(url, expires, again.id, streamed.size, rehosted.mime_type)
    # Local files go straight into image_urls: the client uploads them before the create.
    await client.generate("make it a watercolor", image_urls=[photo, data, uploaded.url])

    files: evo.Files = client.files
    quota: evo.FileQuota = await files.quota()
    page: evo.FilePage = await files.list(page=2, page_size=50)
    for info in page.files:
        listed: evo.FileInfo = info
        print(listed.id, listed.size)
    await files.delete(uploaded)
    await files.delete(uploaded.id)
    print(quota.remain_files, page.total)

    await client.upload(photo, file_name=photo)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    await files.list(page="2")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    await files.delete(42)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    size: int = uploaded.size  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
    print(size)
