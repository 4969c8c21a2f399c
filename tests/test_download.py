"""``client.download(task, dir)`` against the simulator's result files over loopback.

Atomic files named from the task id, no API key to the result host, retries of transient errors, and
refusals (not an image, too big, not http) that leave nothing under the final name.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import attrs
import pytest
from conftest import UNPACED

import evolink_async as evo
from evolink_async._converter import structure_task
from evolink_async.testing import FakeEvolink, Fault

MakeClient = Callable[..., evo.AsyncClient]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
QUICK = "a lighthouse at dusk [duration:0.1]"


def all_files(folder: Path) -> list[str]:
    """Every file under ``folder``, hidden ``.part`` files included, relative to it."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(PNG_SIGNATURE), data[:16]
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def file_records(fake: FakeEvolink) -> list[dict[str, str]]:
    return [dict(r.headers) for r in fake.stats.requests_seen if r.path.startswith("/files/")]


def capped(max_bytes: int) -> evo.Limits:
    return attrs.evolve(UNPACED, max_download_bytes=max_bytes)


async def completed(client: evo.AsyncClient, prompt: str = QUICK, *, size: str | None = None) -> evo.Task:
    return await client.generate(prompt, size=size)


# -- what a download gives ---------------------------------------------------------------------------------


async def test_download_returns_the_path_of_a_real_png_named_after_the_task_id(
    fake: FakeEvolink, client: evo.AsyncClient, tmp_path: Path
) -> None:
    task = await completed(client, size="16:9")
    paths = await client.download(task, tmp_path)
    assert paths == [tmp_path / f"{task.id}-0.png"]
    assert png_size(paths[0].read_bytes()) == (512, 288)
    assert fake.stats.file_requests == 1


async def test_download_leaves_no_part_file_behind(client: evo.AsyncClient, tmp_path: Path) -> None:
    task = await completed(client)
    await client.download(task, tmp_path)
    assert all_files(tmp_path) == [f"{task.id}-0.png"]


async def test_a_rerun_removes_the_part_files_a_killed_download_of_the_task_left(
    client: evo.AsyncClient, tmp_path: Path
) -> None:
    # Issue 9, defect 2: a SIGKILL mid-download leaves the temporary file; the next download of the task
    # removes it (and only the partials of that task).
    task = await completed(client)
    stem = task.id
    left = tmp_path / f".{stem}-0.deadbeef.part"
    left.write_bytes(b"half an image")
    other = tmp_path / ".task-unified-other-0.cafebabe.part"
    other.write_bytes(b"another task's partial")
    (path,) = await client.download(task, tmp_path)
    assert not left.exists()
    assert other.exists()
    assert path.read_bytes().startswith(PNG_SIGNATURE)


async def test_download_saves_every_result_in_result_order(client: evo.AsyncClient, tmp_path: Path) -> None:
    task = await completed(client, "three of them [results:3] [duration:0.1]")
    paths = await client.download(task, tmp_path)
    assert [p.name for p in paths] == [f"{task.id}-{n}.png" for n in range(3)]
    assert all(p.read_bytes().startswith(PNG_SIGNATURE) for p in paths)


async def test_download_creates_a_missing_directory(client: evo.AsyncClient, tmp_path: Path) -> None:
    task = await completed(client)
    folder = tmp_path / "not" / "yet" / "there"
    (path,) = await client.download(task, folder)
    assert path.parent == folder
    assert path.is_file()


async def test_download_never_sends_the_api_key_to_the_result_host(
    fake: FakeEvolink, client: evo.AsyncClient, tmp_path: Path
) -> None:
    task = await completed(client, "two [results:2] [duration:0.1]")
    await client.download(task, tmp_path)
    records = file_records(fake)
    assert len(records) == 2
    for headers in records:
        assert not any(name.lower() == "authorization" for name in headers), headers
        assert fake.api_key not in str(headers)
    # The same client did authenticate its API calls: the check above is not vacuous.
    api = [r for r in fake.stats.requests_seen if r.path.startswith("/v1/")]
    assert api
    assert all(r.headers.get("Authorization") == f"Bearer {fake.api_key}" for r in api)


# -- retries ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        Fault(kind="status", route="files", status=503),
        Fault(kind="status", route="files", status=429, retry_after="0"),
        Fault(kind="html", route="files", status=502),
        Fault(kind="drop", route="files"),
        Fault(kind="truncated", route="files"),
    ],
    ids=["503", "429", "html-502", "dropped", "truncated"],
)
async def test_download_retries_a_transient_error_and_then_saves_the_file(
    fake: FakeEvolink, client: evo.AsyncClient, tmp_path: Path, fault: Fault
) -> None:
    task = await completed(client)
    fake.inject(fault)
    (path,) = await client.download(task, tmp_path)
    assert fake.stats.file_requests == 2
    assert path.read_bytes().startswith(PNG_SIGNATURE)
    assert all_files(tmp_path) == [path.name]


async def test_a_download_that_times_out_is_retried_and_the_file_saved(
    fake: FakeEvolink, make_client: MakeClient, tmp_path: Path
) -> None:
    # Issue 9, defect 1: TimeoutError is an OSError, and was taken for a local disk error: never retried.
    async with make_client(fake, timeouts=evo.Timeouts(request=0.3)) as c:
        task = await completed(c)
        fake.inject(Fault(kind="slow", route="files", delay=1.0))
        (path,) = await c.download(task, tmp_path)
    assert fake.stats.file_requests == 2
    assert path.read_bytes().startswith(PNG_SIGNATURE)
    assert all_files(tmp_path) == [path.name]


async def test_download_gives_up_after_max_attempts_with_download_error_and_no_file(
    fake: FakeEvolink, client: evo.AsyncClient, tmp_path: Path
) -> None:
    task = await completed(client)
    fake.inject(Fault(kind="status", route="files", status=503, times=10))
    with pytest.raises(evo.DownloadError) as info:
        await client.download(task, tmp_path)
    assert info.value.task_id == task.id
    assert info.value.url == task.results[0]
    assert fake.stats.file_requests == client.retry.max_attempts == 4
    assert all_files(tmp_path) == []


async def test_download_of_an_expired_link_404_is_not_retried(
    fake: FakeEvolink, client: evo.AsyncClient, tmp_path: Path
) -> None:
    task = await completed(client)
    fake.inject(Fault(kind="status", route="files", status=404, times=5))
    with pytest.raises(evo.DownloadError) as info:
        await client.download(task, tmp_path)
    assert info.value.task_id == task.id
    assert "404" in str(info.value)
    assert fake.stats.file_requests == 1
    assert all_files(tmp_path) == []


# -- refusals ----------------------------------------------------------------------------------------------


async def test_download_refuses_a_non_image_content_type_with_task_id_and_url_and_writes_nothing(
    fake: FakeEvolink, client: evo.AsyncClient, tmp_path: Path
) -> None:
    task = await completed(client)
    fake.inject(Fault(kind="html", route="files", status=200))  # a 200 text/html page instead of the image
    with pytest.raises(evo.DownloadError) as info:
        await client.download(task, tmp_path)
    assert info.value.task_id == task.id
    assert info.value.url == task.results[0]
    assert "text/html" in str(info.value)
    assert fake.stats.file_requests == 1  # not transient: not retried
    assert all_files(tmp_path) == []


async def test_download_refuses_a_file_over_max_download_bytes_and_leaves_no_partial_file(
    fake: FakeEvolink, make_client: MakeClient, tmp_path: Path
) -> None:
    async with make_client(fake, limits=capped(100)) as c:
        task = await completed(c)  # the simulator's pictures are a few KB
        with pytest.raises(evo.DownloadError) as info:
            await c.download(task, tmp_path)
    assert info.value.task_id == task.id
    assert info.value.url == task.results[0]
    assert "100" in str(info.value)
    assert fake.stats.file_requests == 1
    assert all_files(tmp_path) == []


async def test_max_download_bytes_is_inclusive_a_file_of_exactly_that_size_is_saved(
    fake: FakeEvolink, client: evo.AsyncClient, make_client: MakeClient, tmp_path: Path
) -> None:
    task = await completed(client)
    (probe,) = await client.download(task, tmp_path / "probe")
    size = probe.stat().st_size
    exact = capped(size)
    one_less = capped(size - 1)
    async with make_client(fake, limits=exact) as c:
        (path,) = await c.download(task, tmp_path / "exact")
    assert path.read_bytes() == probe.read_bytes()
    async with make_client(fake, limits=one_less) as c:
        with pytest.raises(evo.DownloadError):
            await c.download(task, tmp_path / "one-less")
    assert all_files(tmp_path / "one-less") == []


async def test_download_refuses_a_non_http_result_url_without_touching_it(
    fake: FakeEvolink, client: evo.AsyncClient, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.png"
    secret.write_bytes(PNG_SIGNATURE + b"private")
    task = structure_task(
        {"id": "task-unified-1-localfile", "status": "completed", "results": [secret.resolve().as_uri()]}
    )
    out = tmp_path / "out"
    with pytest.raises(evo.DownloadError) as info:
        await client.download(task, out)
    assert info.value.task_id == task.id
    assert fake.stats.file_requests == 0
    assert not out.exists() or all_files(out) == []


async def test_download_of_a_task_without_results_raises_download_error_with_its_id(
    fake: FakeEvolink, client: evo.AsyncClient, tmp_path: Path
) -> None:
    pending = await client.submit("[never] still going")
    with pytest.raises(evo.DownloadError) as info:
        await client.download(pending, tmp_path)
    assert info.value.task_id == pending.id
    assert fake.stats.file_requests == 0
    assert all_files(tmp_path) == []


async def test_download_rejects_something_that_is_not_a_task(fake: FakeEvolink, client: evo.AsyncClient) -> None:
    with pytest.raises(evo.ValidationError):
        await client.download("task-unified-1-abcdefgh", ".")  # type: ignore[arg-type]
    assert fake.stats.file_requests == 0


# -- file names --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "hostile_id",
    ["../../evil", "/etc/evil", "..\\..\\evil", "a/../../../evil", "..", ".hidden", "evil\x00.png/..", "~/evil"],
)
async def test_file_name_comes_from_the_sanitised_task_id_never_the_url_and_stays_in_the_directory(
    fake: FakeEvolink, client: evo.AsyncClient, tmp_path: Path, hostile_id: str
) -> None:
    real = await completed(client)
    url = real.results[0] + "?name=../../../url-evil.png"
    # Built by hand: an answer with such an id is refused (tests/test_hostile_inputs.py); a Task made in code is not.
    task = attrs.evolve(real, id=hostile_id, results=(url,))
    out = tmp_path / "a" / "b" / "out"
    (path,) = await client.download(task, out)
    assert path.parent == out
    assert path.resolve().parent == out.resolve()
    assert not path.name.startswith(".")
    assert path.name.endswith("-0.png")
    assert real.id not in path.name
    assert path.read_bytes().startswith(PNG_SIGNATURE)
    # Nothing was written anywhere but the one file inside the directory.
    assert all_files(tmp_path) == [str(path.relative_to(tmp_path))]


# -- existing files ----------------------------------------------------------------------------------------


async def test_an_existing_file_is_kept_and_not_fetched_again_unless_overwrite(
    fake: FakeEvolink, client: evo.AsyncClient, tmp_path: Path
) -> None:
    task = await completed(client)
    (path,) = await client.download(task, tmp_path)
    path.write_bytes(b"kept by the user")
    assert await client.download(task, tmp_path) == [path]
    assert path.read_bytes() == b"kept by the user"
    assert fake.stats.file_requests == 1

    assert await client.download(task, tmp_path, overwrite=True) == [path]
    assert path.read_bytes().startswith(PNG_SIGNATURE)
    assert fake.stats.file_requests == 2
    assert all_files(tmp_path) == [path.name]
