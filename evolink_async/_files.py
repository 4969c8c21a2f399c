"""EvoLink's files API: local files in, URLs out — and the local files of requests, uploaded before a create.

Uploads go to the files host (``files_base_url``) with the key, through their own transport, and are retried on
transient errors with one Idempotency-Key per upload. The same content is uploaded once per client (by its
SHA-256) while its file has not expired. A failure answered as HTTP 200 with ``success: false`` is an error
here, never a file without a URL.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import IO, Any, cast
from urllib.parse import urlsplit

import aiohttp
import aiohttp.payload
import anyio
import attrs

from . import errors
from ._config import RetryPolicy
from ._converter import structure_file_page, structure_quota, structure_uploaded
from ._requests import new_idempotency_key
from ._retry import retrying
from ._transport import Response, Transport, error_from_response, path_segment
from .models import (
    FilePage,
    FileQuota,
    ImageSource,
    Request,
    UploadedFile,
    is_local_source,
    sniff_image_type,
)

__all__ = ("MAX_UPLOAD_BYTES", "Files", "LocalFile", "check_local_sources")

MAX_UPLOAD_BYTES = 64 * 1024 * 1024
"""The largest file ``client.upload()`` sends (a request's own images have their model's smaller cap): the files
API takes images, and a stream that cannot seek is read into memory, so it is read no further than this."""
_HEAD = 16
_CHUNK = 256 * 1024
_UPLOAD_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/gif"})
_REFERENCE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp"})
_EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp", "image/gif": ".gif"}
# An uploaded file lives 72 h; one that expires within this margin is uploaded again rather than reused.
_REUSE_MARGIN = 3600.0


@attrs.frozen
class LocalFile:
    """A local source read far enough to upload it: its hash, type, size and how to open it per attempt."""

    digest: str
    mime_type: str
    size: int
    name: str
    open: Callable[[], IO[bytes] | io.BufferedIOBase]


def _check(head: bytes, size: int | None, name: str, types: frozenset[str], max_bytes: int | None) -> str:
    """The image type the first bytes show, if accepted, and the size within ``max_bytes``: checked before the
    whole file is read (a 3 GB video given by mistake fails at once)."""
    mime = sniff_image_type(head)
    if mime not in types:
        kinds = ", ".join(sorted(t.split("/")[1] for t in types))
        raise errors.ValidationError("file", f"{name or 'the data'} is not an image of type {kinds}")
    if max_bytes is not None and size is not None and size > max_bytes:
        raise errors.ValidationError("file", f"{name or 'the data'} is {size} bytes; at most {max_bytes} are accepted")
    return mime


def _digest(fh: IO[bytes]) -> str:
    digest = hashlib.sha256()
    while chunk := fh.read(_CHUNK):
        if not isinstance(chunk, bytes):
            raise errors.ValidationError("file", "is a text file object: open the image in binary mode ('rb')")
        digest.update(chunk)
    return digest.hexdigest()


def _local(digest: str, mime: str, size: int, name: str, opener: Callable[[], Any]) -> LocalFile:
    stem = Path(name).stem if name else f"upload-{digest[:12]}"
    return LocalFile(digest=digest, mime_type=mime, size=size, name=stem + _EXTENSIONS[mime], open=opener)


def _read_path(path: Path, types: frozenset[str], max_bytes: int | None) -> LocalFile:
    if not path.is_file():
        raise errors.ValidationError("file", f"{str(path)!r} does not exist or is not a file")
    with path.open("rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        mime = _check(fh.read(_HEAD), size, path.name, types, max_bytes)
        fh.seek(0)
        digest = _digest(fh)
    return _local(digest, mime, size, path.name, lambda: path.open("rb"))


def _read_bytes(data: bytes, name: str, types: frozenset[str], max_bytes: int | None) -> LocalFile:
    mime = _check(data[:_HEAD], len(data), name, types, max_bytes)
    return _local(hashlib.sha256(data).hexdigest(), mime, len(data), name, lambda: io.BytesIO(data))


def _read_stream(source: Any, max_bytes: int | None) -> bytes:
    """A stream's bytes, read in chunks (a pipe answers a big read with what it has) up to one byte past the cap:
    an endless stream is refused, not held in memory."""
    cap = MAX_UPLOAD_BYTES if max_bytes is None else max_bytes
    chunks: list[bytes] = []
    size = 0
    while size <= cap:
        chunk = source.read(min(_CHUNK, cap + 1 - size))
        if not chunk:
            break
        if not isinstance(chunk, bytes):
            raise errors.ValidationError("file", "is a text file object: open the image in binary mode ('rb')")
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _seekable(source: Any) -> bool:
    try:
        return bool(source.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def _read_file_object(source: Any, types: frozenset[str], max_bytes: int | None) -> LocalFile:
    name = os.path.basename(str(getattr(source, "name", "") or ""))
    if not _seekable(source):
        # Read once (at most one byte over the cap), so that a retry can send it again.
        return _read_bytes(_read_stream(source, max_bytes), name, types, max_bytes)
    start = source.tell()
    size = source.seek(0, os.SEEK_END) - start
    source.seek(start)
    head = source.read(_HEAD)
    if not isinstance(head, bytes):
        raise errors.ValidationError("file", "is a text file object: open the image in binary mode ('rb')")
    mime = _check(head, size, name, types, max_bytes)
    source.seek(start)
    digest = _digest(source)
    source.seek(start)

    def reopen() -> io.BufferedIOBase:
        source.seek(start)
        return _Unclosed(source, start)

    return _local(digest, mime, size, name, reopen)


class _Unclosed(io.BufferedIOBase):
    """The caller's file object, lent to an upload: reading goes through; closing leaves it open, where it was."""

    def __init__(self, inner: IO[bytes], start: int) -> None:
        super().__init__()
        self._inner = inner
        self._start = start

    def close(self) -> None:
        if not self.closed and not self._inner.closed:
            self._inner.seek(self._start)
        super().close()

    def read(self, size: int | None = -1) -> bytes:
        return self._inner.read(-1 if size is None else size)

    def readable(self) -> bool:
        return True


class _Exact(io.BufferedIOBase):
    """A local file as an upload sends it: exactly the ``size`` bytes that were measured and hashed, no byte more
    (a file that grew would overrun the declared length into the next request on the connection). A file that
    shrank or changed since it was hashed fails before its last byte goes: ``problem`` says why."""

    def __init__(self, local: LocalFile) -> None:
        super().__init__()
        self._inner = local.open()
        self._left = local.size
        self._digest = local.digest
        self._hash = hashlib.sha256()
        self.problem: str | None = None

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if self._left <= 0:
            return b""
        chunk = self._inner.read(self._left if size is None or size < 0 else min(size, self._left))
        if not chunk:
            self._fail(f"shrank while it was uploaded ({self._left} of its bytes are gone)")
        self._left -= len(chunk)
        self._hash.update(chunk)
        if self._left == 0 and self._hash.hexdigest() != self._digest:
            self._fail("changed while it was uploaded (its content is not what was checked and hashed)")
        return chunk

    def _fail(self, problem: str) -> None:
        self.problem = problem
        # Raised inside aiohttp's body writer, which closes the connection: the server never gets a whole file.
        raise OSError(problem)

    def close(self) -> None:
        self._inner.close()
        super().close()


class _ExactPayload(aiohttp.payload.IOBasePayload):
    """The file part of an upload, its length declared as measured (aiohttp would ask the file system again)."""

    def __init__(self, reader: _Exact, size: int, *, filename: str, content_type: str) -> None:
        super().__init__(cast(IO[bytes], reader), filename=filename, content_type=content_type)
        self._declared = size

    @property
    def size(self) -> int:
        return self._declared


def read_local(
    source: ImageSource, *, types: frozenset[str] = _UPLOAD_TYPES, max_bytes: int | None = None
) -> LocalFile:
    """Check and hash a local source (blocking): an image of an accepted type, within ``max_bytes``."""
    try:
        if isinstance(source, os.PathLike):
            return _read_path(Path(source), types, max_bytes)
        if isinstance(source, (bytes, bytearray)):
            return _read_bytes(bytes(source), "", types, max_bytes)
        if isinstance(source, io.TextIOBase):
            raise errors.ValidationError("file", "is a text file object: open the image in binary mode ('rb')")
        if not hasattr(source, "read"):
            raise errors.ValidationError(
                "file", f"must be a path, bytes or a binary file object, got {type(source).__name__}"
            )
        return _read_file_object(source, types, max_bytes)
    except OSError as exc:
        raise errors.ValidationError("file", f"cannot be read: {exc}") from None
    except ValueError as exc:  # a closed file object
        if isinstance(exc, errors.EvolinkError):
            raise
        raise errors.ValidationError("file", f"cannot be read: {exc}") from None


def check_local_sources(request: Request) -> None:
    """Every local ``image_urls`` item of ``request`` readable, of an accepted type and size (blocking): the
    check a batch file gets before its first create. Raises ValidationError naming the item."""
    max_bytes = getattr(request, "_max_image_bytes", None)
    for index, item in enumerate(getattr(request, "image_urls", ())):
        if is_local_source(item) and isinstance(item, os.PathLike):
            try:
                read_local(item, types=_REFERENCE_TYPES, max_bytes=max_bytes)
            except errors.ValidationError as exc:
                raise errors.ValidationError(f"image_urls[{index}]", exc.message) from None


def _expires(uploaded: UploadedFile) -> float | None:
    if uploaded.expires_at is None:
        return None
    try:
        return datetime.fromisoformat(uploaded.expires_at.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class Files:
    """The files API of one key (``client.files``): upload, quota, list, delete."""

    def __init__(self, transport: Transport, retry: RetryPolicy) -> None:
        self.transport = transport
        self.retry = retry
        self._uploaded: dict[str, UploadedFile] = {}
        self._uploading: dict[str, anyio.Event] = {}
        # File objects are read (hashed, checked) one at a time: two tasks given the same object must not
        # interleave their reads and seeks.
        self._file_objects: anyio.Lock | None = None  # made on first use: a lock needs a running event loop

    async def _read_and_upload(
        self,
        source: ImageSource,
        *,
        types: frozenset[str],
        max_bytes: int | None,
        file_name: str | None = None,
        upload_path: str | None = None,
    ) -> UploadedFile:
        """Check and hash ``source`` in a worker thread (a cancelled call does not wait for a long hash), then
        upload it unless this client has. A file object is read by one upload at a time, from its hash to the
        end of its stream: two tasks given the same object must not interleave their reads and seeks."""
        read = functools.partial(read_local, source, types=types, max_bytes=max_bytes)
        if isinstance(source, (os.PathLike, bytes, bytearray)):
            local = await anyio.to_thread.run_sync(read, abandon_on_cancel=True)
            return await self._upload_once(local, file_name, upload_path)
        if self._file_objects is None:
            self._file_objects = anyio.Lock()
        async with self._file_objects:
            local = await anyio.to_thread.run_sync(read)
            return await self._upload_once(local, file_name, upload_path)

    def __repr__(self) -> str:
        return f"<Files {self.transport.base_url} uploaded={len(self._uploaded)}>"

    async def _request(
        self, method: str, path: str, *, body: Any = None, form: Callable[[], aiohttp.FormData] | None = None
    ) -> Any:
        """One call, retried on transient errors; the ``data`` of a ``success: true`` envelope."""
        data = json.dumps(body).encode() if body is not None else None
        key = new_idempotency_key() if method == "POST" else None

        async def attempt() -> Any:
            resp = await self.transport.send(
                method, path, body=data, form=form() if form is not None else None, idempotency_key=key
            )
            return _unwrap(resp)

        return await retrying(
            self.retry, attempt, _decide, observers=self.transport.observers, what=f"files API {method} {path}"
        )

    async def upload(
        self, source: ImageSource, *, file_name: str | None = None, upload_path: str | None = None
    ) -> UploadedFile:
        """Upload a path, bytes or binary file object (streamed), or re-host an http(s) URL; return the file."""
        if isinstance(source, str):
            return await self._upload_url(source, file_name, upload_path)
        return await self._read_and_upload(
            source, types=_UPLOAD_TYPES, max_bytes=MAX_UPLOAD_BYTES, file_name=file_name, upload_path=upload_path
        )

    async def _upload_url(self, url: str, file_name: str | None, upload_path: str | None) -> UploadedFile:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise errors.ValidationError(
                "source",
                f"a string must be an http(s) URL to re-host (pass a pathlib.Path for a local file): {url[:100]!r}",
            )
        body = {"file_url": url, **_options(file_name, upload_path)}
        return structure_uploaded(await self._request("POST", "/api/v1/files/upload/url", body=body))

    async def _upload_once(self, local: LocalFile, file_name: str | None, upload_path: str | None) -> UploadedFile:
        """The upload of this content, or the one this client already made (or is making) of it, under the same
        name and path."""
        key = f"{local.digest}/{file_name or ''}/{upload_path or ''}"
        while (pending := self._uploading.get(key)) is not None:
            await pending.wait()
        known = self._uploaded.get(key)
        expires = _expires(known) if known is not None else None
        if known is not None and (expires is None or expires - time.time() > _REUSE_MARGIN):
            return known
        self._uploading[key] = done = anyio.Event()
        try:
            uploaded = await self._stream(local, file_name, upload_path)
            self._uploaded[key] = uploaded
            return uploaded
        finally:
            del self._uploading[key]
            done.set()

    async def _stream(self, local: LocalFile, file_name: str | None, upload_path: str | None) -> UploadedFile:
        opened: list[_Exact] = []

        def form() -> aiohttp.FormData:
            _check_unchanged(opened)  # a file found changed by the last attempt is not sent again
            fh = _Exact(local)
            opened.append(fh)
            part = _ExactPayload(fh, local.size, filename=file_name or local.name, content_type=local.mime_type)
            data = aiohttp.FormData()
            data.add_field("file", part, filename=file_name or local.name, content_type=local.mime_type)
            for name, value in _options(file_name, upload_path).items():
                data.add_field(name, value)
            return data

        try:
            return structure_uploaded(await self._request("POST", "/api/v1/files/upload/stream", form=form))
        except errors.APIConnectionError:
            _check_unchanged(opened)  # the connection failed because the file changed: say that
            raise
        finally:
            for fh in opened:
                fh.close()

    async def resolve(self, request: Request) -> Request:
        """``request`` with every local ``image_urls`` item uploaded and replaced by its URL."""
        sources = getattr(request, "image_urls", ())
        if not any(is_local_source(item) for item in sources):
            return request
        max_bytes = getattr(request, "_max_image_bytes", None)
        urls: list[ImageSource] = []
        for index, item in enumerate(sources):
            if not is_local_source(item):
                urls.append(item)
                continue
            field = f"image_urls[{index}]"
            try:
                urls.append((await self._read_and_upload(item, types=_REFERENCE_TYPES, max_bytes=max_bytes)).url)
            except errors.ValidationError as exc:
                raise errors.ValidationError(field, exc.message) from None
            except errors.EvolinkError as exc:
                # Named by its field, and never taken for a refusal of the account's creates.
                raise errors.UploadError(field, exc) from exc
        resolved: Request = attrs.evolve(cast(Any, request), image_urls=tuple(urls))
        return resolved

    async def quota(self) -> FileQuota:
        """The account's file quota (``GET /api/v1/files/quota``)."""
        return structure_quota(await self._request("GET", "/api/v1/files/quota"))

    async def list(self, *, page: int = 1, page_size: int = 20) -> FilePage:
        """One page of the account's files (``GET /api/v1/files/list``)."""
        for name, value in (("page", page), ("page_size", page_size)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise errors.ValidationError(name, f"must be a positive int, got {value!r}")
        data = await self._request("GET", f"/api/v1/files/list?page={page}&pageSize={page_size}")
        return structure_file_page(data)

    async def delete(self, file: UploadedFile | str) -> None:
        """Delete a file (``DELETE /api/v1/files/{id}``); it is forgotten by this client's upload cache too."""
        file_id = file.id if isinstance(file, UploadedFile) else file
        if not isinstance(file_id, str) or not file_id:
            raise errors.ValidationError("file", f"must be an UploadedFile or a file id, got {file_id!r}")
        await self._request("DELETE", f"/api/v1/files/{path_segment('file', file_id)}")
        for digest, uploaded in list(self._uploaded.items()):
            if uploaded.id == file_id:
                del self._uploaded[digest]


def _check_unchanged(readers: list[_Exact]) -> None:
    for reader in readers:
        if reader.problem is not None:
            raise errors.ValidationError("file", f"{reader.problem}; nothing was stored")


def _options(file_name: str | None, upload_path: str | None) -> dict[str, str]:
    options = {"file_name": file_name, "upload_path": upload_path}
    return {k: v for k, v in options.items() if v is not None}


def _unwrap(resp: Response) -> Any:
    """The ``data`` of ``{success, code, msg, data}``; ``success: false`` (even under HTTP 200) is an error."""
    payload = resp.data
    if not isinstance(payload, dict) or "success" not in payload:
        raise errors.MalformedResponseError(
            f"files API answer is not a {{success, code, msg, data}} envelope: {str(payload)[:200]}",
            request_id=resp.request_id,
        )
    if payload.get("success") is True:
        return payload.get("data")
    code = payload.get("code")
    status = code if isinstance(code, int) and 400 <= code < 600 else 400
    msg = payload.get("msg") or payload.get("message") or "no message"
    refusal = {**payload, "msg": f"files API refused (success: false under HTTP {resp.status}): {msg}"}
    raise error_from_response(status, resp.headers, json.dumps(refusal).encode())


def _decide(exc: Exception) -> bool | float:
    if isinstance(exc, errors.RateLimitError) and exc.retry_after is not None:
        return exc.retry_after
    # A garbled answer is retried too: at worst a file is stored twice (a quota slot, never credits).
    return isinstance(
        exc, (errors.RateLimitError, errors.ServerError, errors.APIConnectionError, errors.MalformedResponseError)
    )
