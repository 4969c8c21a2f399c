"""``client.result_bytes`` and ``client.stream_result``: results in memory, with download's caps, retries and
key hygiene, against the simulator's result files over loopback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import anyio.from_thread
import attrs
import pytest
from conftest import UNPACED

import evolink_async as evo
from evolink_async.testing import FakeEvolink, Fault

MakeClient = Callable[..., evo.AsyncClient]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
QUICK = "a lighthouse at dusk [duration:0.1]"


def file_headers(fake: FakeEvolink) -> list[dict[str, str]]:
    return [dict(r.headers) for r in fake.stats.requests_seen if r.path.startswith("/files/")]


async def test_result_bytes_are_the_downloaded_file_and_never_carry_the_key(
    fake: FakeEvolink, client: evo.AsyncClient, tmp_path: Path
) -> None:
    task = await client.generate("two [results:2] [duration:0.1]")
    second = await client.result_bytes(task, 1)
    (_, saved) = await client.download(task, tmp_path)
    assert second.startswith(PNG_SIGNATURE)
    assert second == saved.read_bytes()
    headers = file_headers(fake)
    assert len(headers) == 3
    assert all("authorization" not in {k.lower() for k in h} for h in headers)
    assert all(fake.api_key not in str(h) for h in headers)


@pytest.mark.parametrize(
    "fault",
    [
        Fault(kind="status", route="files", status=503),
        Fault(kind="drop", route="files"),
        Fault(kind="truncated", route="files"),
    ],
    ids=["503", "dropped", "truncated"],
)
async def test_result_bytes_retry_a_transient_error(fake: FakeEvolink, client: evo.AsyncClient, fault: Fault) -> None:
    task = await client.generate(QUICK)
    fake.inject(fault)
    data = await client.result_bytes(task)
    assert data.startswith(PNG_SIGNATURE)
    assert fake.stats.file_requests == 2


async def test_result_bytes_of_an_expired_link_raise_with_the_task_id_once(
    fake: FakeEvolink, client: evo.AsyncClient
) -> None:
    task = await client.generate(QUICK)
    fake.inject(Fault(kind="status", route="files", status=404, times=5))
    with pytest.raises(evo.DownloadError) as info:
        await client.result_bytes(task)
    assert info.value.task_id == task.id
    assert "24 h" in str(info.value)
    assert fake.stats.file_requests == 1


async def test_result_bytes_refuse_a_file_over_the_cap(fake: FakeEvolink, make_client: MakeClient) -> None:
    async with make_client(fake, limits=attrs.evolve(UNPACED, max_download_bytes=100)) as c:
        task = await c.generate(QUICK)
        with pytest.raises(evo.DownloadError, match="100-byte cap"):
            await c.result_bytes(task)
    assert fake.stats.file_requests == 1


@pytest.mark.parametrize("index", [1, -1, "0", True])
async def test_a_bad_index_is_refused_before_any_fetch(
    fake: FakeEvolink, client: evo.AsyncClient, index: object
) -> None:
    task = await client.generate(QUICK)
    with pytest.raises(evo.ValidationError) as info:
        await client.result_bytes(task, index)  # type: ignore[arg-type]
    assert info.value.field == "index"
    with pytest.raises(evo.ValidationError):
        async with client.stream_result(task, index):  # type: ignore[arg-type]
            pass
    assert fake.stats.file_requests == 0


async def test_a_task_without_results_has_no_bytes(fake: FakeEvolink, client: evo.AsyncClient) -> None:
    task = await client.submit("later [never]")
    with pytest.raises(evo.DownloadError) as info:
        await client.result_bytes(task)
    assert info.value.task_id == task.id


async def test_stream_result_yields_the_file_in_chunks_with_its_type_and_size(
    fake: FakeEvolink, client: evo.AsyncClient
) -> None:
    task = await client.generate(QUICK)
    whole = await client.result_bytes(task)
    async with client.stream_result(task, chunk_size=1000) as stream:
        assert stream.content_type == "image/png"
        assert stream.extension == ".png"
        assert stream.size == len(whole)
        chunks = [chunk async for chunk in stream]
    assert b"".join(chunks) == whole
    assert len(chunks) > 1
    assert max(map(len, chunks)) <= 1000
    assert stream.bytes_read == len(whole)
    assert "authorization" not in {k.lower() for k in file_headers(fake)[-1]}


async def test_stream_result_retries_its_opening(fake: FakeEvolink, client: evo.AsyncClient) -> None:
    task = await client.generate(QUICK)
    fake.inject(Fault(kind="status", route="files", status=503))
    async with client.stream_result(task) as stream:
        data = b"".join([chunk async for chunk in stream])
    assert data.startswith(PNG_SIGNATURE)
    assert fake.stats.file_requests == 2


async def test_a_stream_cut_short_raises_a_transient_error_and_is_not_restarted(
    fake: FakeEvolink, client: evo.AsyncClient
) -> None:
    task = await client.generate(QUICK)
    fake.inject(Fault(kind="truncated", route="files"))
    got = bytearray()

    async def read() -> None:
        async with client.stream_result(task, chunk_size=64) as stream:
            async for chunk in stream:
                got.extend(chunk)

    with pytest.raises(evo.DownloadError) as info:
        await read()
    assert info.value.transient
    assert info.value.task_id == task.id
    assert got.startswith(PNG_SIGNATURE)  # what arrived was handed over, once
    assert fake.stats.file_requests == 1


async def test_stream_result_refuses_an_announced_size_over_the_cap(fake: FakeEvolink, make_client: MakeClient) -> None:
    async with make_client(fake, limits=attrs.evolve(UNPACED, max_download_bytes=100)) as c:
        task = await c.generate(QUICK)
        with pytest.raises(evo.DownloadError, match="over the 100-byte cap"):
            async with c.stream_result(task):
                pass


@pytest.fixture
def sim() -> Iterator[FakeEvolink]:
    with anyio.from_thread.start_blocking_portal() as portal, portal.wrap_async_context_manager(FakeEvolink()) as fake:
        yield fake


def test_the_sync_client_reads_result_bytes(sim: FakeEvolink) -> None:
    with evo.Client(sim.api_key, base_url=sim.base_url) as client:
        task = client.generate("sync [duration:0.1]")
        assert client.result_bytes(task).startswith(PNG_SIGNATURE)
