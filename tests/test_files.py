"""Local files: ``client.upload`` and local ``image_urls`` through the simulator's files API, over real HTTP."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import aiohttp
import anyio
import pytest

import evolink_async as evo
from evolink_async.testing import FakeEvolink, Fault
from evolink_async.testing._png import solid_png

PNG = solid_png(16, 16, (10, 200, 30))
GIF = b"GIF89a" + b"\x00" * 40


def uploads_seen(fake: FakeEvolink) -> list[str]:
    return [r.path for r in fake.stats.requests_seen if r.path.startswith("/api/v1/files/upload")]


async def fetch(url: str) -> bytes:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        assert resp.status == 200
        return await resp.read()


async def test_a_path_is_streamed_to_the_files_api_with_the_key_and_its_url_serves_it(
    fake: FakeEvolink, client: evo.AsyncClient, tmp_path: Path
) -> None:
    image = tmp_path / "cat.png"
    image.write_bytes(PNG)
    uploaded = await client.upload(image)
    assert (uploaded.size, uploaded.mime_type, uploaded.original_name) == (len(PNG), "image/png", "cat.png")
    assert uploaded.expires_at is not None
    assert uploaded.download_url
    assert await fetch(uploaded.url) == PNG
    [record] = [r for r in fake.stats.requests_seen if r.path == "/api/v1/files/upload/stream"]
    assert record.headers["Authorization"] == f"Bearer {fake.api_key}"
    assert record.headers["Content-Type"].startswith("multipart/form-data")
    assert record.headers.get("Idempotency-Key")


async def test_bytes_and_binary_file_objects_upload_and_the_callers_file_stays_open(
    fake: FakeEvolink, client: evo.AsyncClient, tmp_path: Path
) -> None:
    named = await client.upload(PNG, file_name="mine.png")
    assert named.original_name == "mine.png"
    from_bytes = await client.upload(PNG)
    assert from_bytes.id != named.id, "another name is another upload, never a silently ignored option"
    buffer = io.BytesIO(b"junk" + PNG)
    buffer.seek(4)
    from_buffer = await client.upload(buffer)
    # The caller's file object is theirs: not closed, not moved.
    assert not buffer.closed
    assert buffer.tell() == 4
    assert await fetch(from_buffer.url) == PNG
    (tmp_path / "b.png").write_bytes(PNG)
    with (tmp_path / "b.png").open("rb") as fh:
        from_file = await client.upload(fh)
        assert not fh.closed
    assert from_file.id == from_bytes.id == from_buffer.id, "the same content is uploaded once per client"
    assert len(uploads_seen(fake)) == 2
    other = io.BytesIO(b"head" + solid_png(4, 4, (1, 2, 3)))
    other.seek(4)
    await client.upload(other)
    assert len(uploads_seen(fake)) == 3
    assert not other.closed
    assert other.tell() == 4, "read for the upload, then put back where it was"


async def test_a_url_is_rehosted(fake: FakeEvolink, client: evo.AsyncClient) -> None:
    task = await client.generate("a source image [duration:0.05]")
    uploaded = await client.upload(task.results[0])
    assert uploads_seen(fake) == ["/api/v1/files/upload/url"]
    assert await fetch(uploaded.url) == await fetch(task.results[0])


@pytest.mark.parametrize(
    ("source", "match"),
    [
        ("cat.png", "http"),
        (b"plain text, not an image", "not an image"),
        (io.StringIO("text"), "binary mode"),
        (Path("/no/such/file.png"), "does not exist"),
    ],
)
async def test_bad_sources_fail_before_any_request(
    fake: FakeEvolink, client: evo.AsyncClient, source: object, match: str
) -> None:
    with pytest.raises(evo.ValidationError, match=match):
        await client.upload(source)  # type: ignore[arg-type]
    assert fake.stats.requests == 0


async def test_local_image_urls_are_uploaded_once_and_sent_as_urls(
    fake: FakeEvolink, client: evo.AsyncClient, tmp_path: Path
) -> None:
    image = tmp_path / "ref.png"
    image.write_bytes(PNG)
    first = await client.generate("edit it [duration:0.05]", image_urls=[image, PNG, "https://example.com/x.png"])
    # Several at once with the same file: still one upload (the later ones wait for the first).
    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(lambda: client.generate("again [duration:0.05]", image_urls=image))
    assert len(uploads_seen(fake)) == 1
    sent = fake.tasks[first.id].request["image_urls"]
    uploaded_url = next(iter(fake.files_api.files.values()))
    assert sent[0] == sent[1]
    assert sent[0].endswith(uploaded_url.name)
    assert sent[2] == "https://example.com/x.png"


@pytest.mark.parametrize(
    ("image_urls", "match"),
    [
        (Path("/no/such/ref.png"), "does not exist"),
        (Path("/"), "is not a file"),
        (GIF, "not a PNG, JPEG or WebP"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * (10 * 1024 * 1024), "at most 10485760"),
        (Path("notes.txt"), "not an image"),
    ],
)
async def test_a_bad_local_image_names_its_item_before_any_request(
    fake: FakeEvolink, client: evo.AsyncClient, tmp_path: Path, image_urls: object, match: str
) -> None:
    if image_urls == Path("notes.txt"):
        image_urls = tmp_path / "notes.txt"
        image_urls.write_text("hello")
    with pytest.raises(evo.ValidationError, match=match) as caught:
        await client.generate("edit", image_urls=image_urls)  # type: ignore[arg-type]
    assert caught.value.field == "image_urls[0]"
    assert fake.stats.requests == 0


async def test_a_file_object_that_is_not_an_image_is_refused_before_the_create(
    fake: FakeEvolink, client: evo.AsyncClient
) -> None:
    with pytest.raises(evo.ValidationError, match="image_urls\\[0\\]"):
        await client.generate("edit", image_urls=[io.BytesIO(b"%PDF-1.7 not an image")])
    assert fake.stats.requests == 0


async def test_the_files_apis_http_200_refusal_is_an_error_and_no_create_follows(
    fake: FakeEvolink, client: evo.AsyncClient
) -> None:
    fake.files_api.max_files = 0
    with pytest.raises(evo.UploadError, match="quota") as caught:
        await client.generate("edit", image_urls=[PNG])
    assert caught.value.field == "image_urls[0]"
    assert isinstance(caught.value.__cause__, evo.PermissionDeniedError)
    assert "success: false" in str(caught.value)
    assert fake.stats.create_requests == 0


async def test_quota_list_and_delete(fake: FakeEvolink, client: evo.AsyncClient) -> None:
    uploaded = await client.upload(PNG)
    quota = await client.files.quota()
    assert (quota.used_files, quota.max_files, quota.remain_files) == (1, 100, 99)
    page = await client.files.list(page=1, page_size=10)
    assert page.total == 1
    assert [f.id for f in page.files] == [uploaded.id]
    await client.files.delete(uploaded)
    assert (await client.files.quota()).used_files == 0
    with pytest.raises(evo.NotFoundError):
        await client.files.delete(uploaded.id)
    # Forgotten by the client's cache too: the same content is uploaded again, not answered with a dead URL.
    again = await client.upload(PNG)
    assert again.id != uploaded.id
    with pytest.raises(evo.ValidationError, match="page_size"):
        await client.files.list(page_size=0)


async def test_uploads_are_retried_on_transient_errors_and_store_one_file(
    fake: FakeEvolink, client: evo.AsyncClient
) -> None:
    fake.inject(Fault(route="uploads", kind="status", status=503))
    fake.inject(Fault(route="uploads", kind="drop"))
    uploaded = await client.upload(PNG)
    assert len(uploads_seen(fake)) == 3
    assert list(fake.files_api.files) == [uploaded.id]


async def test_a_files_host_of_its_own_gets_the_uploads_and_the_api_host_none(
    make_client: Callable[..., evo.AsyncClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with FakeEvolink() as api, FakeEvolink(api_key=api.api_key) as files:
        monkeypatch.setenv("EVOLINK_FILES_BASE_URL", files.base_url)
        async with make_client(api) as client:
            assert client.files_base_url == files.base_url
            task = await client.generate("edit [duration:0.05]", image_urls=[PNG])
        assert api.stats.upload_requests == 0
        assert files.stats.upload_requests == 1
        assert api.tasks[task.id].request["image_urls"][0].startswith(files.base_url)
        assert files.stats.create_requests == 0


def test_the_files_host_defaults_to_evolinks_and_a_plain_http_one_far_away_is_refused() -> None:
    client = evo.AsyncClient("sk-test")
    assert client.files_base_url == "https://files-api.evolink.ai"
    with pytest.raises(evo.ConfigurationError, match=r"files_base_url|plain http"):
        evo.AsyncClient("sk-test", files_base_url="http://files.example.com")


async def test_a_batch_with_local_files_and_a_journal_resumes_without_uploading_again(
    fake: FakeEvolink, client: evo.AsyncClient, tmp_path: Path
) -> None:
    image = tmp_path / "ref.png"
    image.write_bytes(PNG)
    inputs = [{"prompt": f"edit {i} [duration:0.05]", "image_urls": [str(image)]} for i in range(2)]
    # A JSON line names a path as a string: that is a URL field, and a clear error says what to do.
    [bad, _] = await client.generate_all(inputs)
    assert isinstance(bad.error, evo.ValidationError)
    assert "pathlib.Path" in str(bad.error)
    requests = [evo.ImageRequest(f"edit {i} [duration:0.05]", image_urls=[image]) for i in range(3)]
    journal = tmp_path / "j.sqlite"
    first = await client.generate_all(requests, journal=journal)
    assert all(o.ok for o in first)
    assert len(uploads_seen(fake)) == 1
    before = fake.stats.requests
    again = await client.generate_all(requests, journal=journal)
    assert [o.task.id for o in again] == [o.task.id for o in first]  # type: ignore[union-attr]
    assert fake.stats.requests == before


async def test_a_batch_resumed_after_unknown_creates_resends_the_same_upload_urls_and_pays_once(
    make_client: Callable[..., evo.AsyncClient], tmp_path: Path
) -> None:
    image = tmp_path / "ref.png"
    image.write_bytes(PNG)
    requests = [evo.ImageRequest(f"edit {i} [duration:0.05]", image_urls=[image]) for i in range(2)]
    journal = tmp_path / "j.sqlite"
    few_tries = evo.RetryPolicy(max_attempts=2, initial_backoff=0.01, max_backoff=0.02)
    async with FakeEvolink() as fake:
        # Created and charged, but no answer reaches the client: the outcome is unknown.
        fake.inject(Fault(route="create", kind="drop_after_create", times=4))
        async with make_client(fake, retry=few_tries) as client:
            first = await client.generate_all(requests, journal=journal)
        assert all(isinstance(o.error, evo.SubmissionUnknownError) for o in first)
        assert fake.stats.creates == 2
        # A new process (a new client: its upload cache is empty) resumes from the journal.
        async with make_client(fake) as client:
            again = await client.generate_all(requests, journal=journal)
        assert all(o.ok for o in again), [o.error for o in again]
        assert fake.stats.creates == 2, "replayed by their keys, not paid twice"
        assert fake.stats.upload_requests == 1, "the URLs of the first run's upload, from the journal"


async def test_submission_unknown_carries_the_request_as_sent_for_a_resubmission(
    fake: FakeEvolink, make_client: Callable[..., evo.AsyncClient]
) -> None:
    few_tries = evo.RetryPolicy(max_attempts=2, initial_backoff=0.01, max_backoff=0.02)
    fake.inject(Fault(route="create", kind="drop_after_create", times=2))
    async with make_client(fake, retry=few_tries) as client:
        with pytest.raises(evo.SubmissionUnknownError) as caught:
            await client.submit("edit [duration:0.05]", image_urls=[PNG])
    err = caught.value
    assert isinstance(err.request, evo.ImageRequest)
    assert all(isinstance(url, str) for url in err.request.image_urls)
    async with make_client(fake) as client:  # another process: the bytes would be uploaded anew
        task = await client.submit(err.request, idempotency_key=err.idempotency_key)
    assert fake.stats.creates == 1
    assert task.id in fake.tasks


async def test_an_upload_refused_in_a_batch_fails_only_its_own_input(
    make_client: Callable[..., evo.AsyncClient],
) -> None:
    async with FakeEvolink(max_files=1) as fake, make_client(fake) as client:
        other = solid_png(8, 8, (200, 0, 0))
        inputs: list[evo.ImageRequest | str] = [
            evo.ImageRequest("edit [duration:0.05]", image_urls=[PNG]),
            evo.ImageRequest("edit other [duration:0.05]", image_urls=[other]),
        ]
        inputs += [f"plain {i} [duration:0.05]" for i in range(4)]
        outcomes = await client.generate_all(inputs, max_in_flight=1)
    errors = [o.error for o in outcomes if not o.ok]
    assert len(errors) == 1
    assert isinstance(errors[0], evo.UploadError)
    assert errors[0].field == "image_urls[0]"
    assert fake.stats.creates == 5


async def test_one_file_object_shared_by_concurrent_uploads_is_read_one_at_a_time(
    fake: FakeEvolink, client: evo.AsyncClient
) -> None:
    big = solid_png(600, 600, (1, 2, 3)) + b"\x00" * 900_000  # a PNG with trailing bytes: a large file
    shared = io.BytesIO(big)
    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(client.upload, shared)
    assert len(uploads_seen(fake)) == 1
    [stored] = fake.files_api.files.values()
    assert stored.data == big


class ReadOnly:
    """A stream with nothing but read(): not seekable, like a socket or a pipe."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def read(self, size: int = -1) -> bytes:
        return self._data.read(size)


async def test_a_stream_with_only_read_is_read_once_and_uploaded(fake: FakeEvolink, client: evo.AsyncClient) -> None:
    task = await client.generate("edit [duration:0.05]", image_urls=[ReadOnly(PNG)])  # type: ignore[list-item]
    [stored] = fake.files_api.files.values()
    assert stored.data == PNG
    assert task.is_final


async def test_a_huge_file_that_is_no_image_fails_at_once_not_after_hashing(
    fake: FakeEvolink, client: evo.AsyncClient, tmp_path: Path
) -> None:
    huge = tmp_path / "movie.mkv"
    with huge.open("wb") as fh:
        fh.truncate(4 * 1024**3)  # 4 GB, sparse: reading it all would take many seconds
    with anyio.fail_after(5), pytest.raises(evo.ValidationError, match="not an image"):
        await client.upload(huge)
    assert fake.stats.requests == 0
