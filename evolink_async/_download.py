"""Streaming, atomic downloads of result files (images, videos, audio) — never with the API key.

Results live on a separate, unauthenticated host (``files.evolink.ai``). Downloads therefore use their own
session with no ``Authorization`` header at all and their own connection limit, so that a batch's downloads
never starve its API calls and the key cannot reach a result host even if a URL points back at the API.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import anyio

from . import errors, events
from ._config import RetryPolicy, Timeouts
from ._proxy import proxy_for
from ._retry import parse_retry_after, retrying
from ._version import __version__
from .models import Task

__all__ = ("Downloader", "ResultStream")

_EXTENSIONS = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/jpg": ".jpg",
    "image/webp": ".webp",
    "image/gif": ".gif",
    "video/mp4": ".mp4",
    "video/webm": ".webm",
    "video/quicktime": ".mov",
    "audio/mpeg": ".mp3",
    "audio/mp3": ".mp3",
    "audio/wav": ".wav",
    "audio/x-wav": ".wav",
    "audio/wave": ".wav",
    "audio/mp4": ".m4a",
    "audio/x-m4a": ".m4a",
    "audio/aac": ".aac",
    "audio/ogg": ".ogg",
    "audio/flac": ".flac",
}
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_CHUNK = 64 * 1024
_MAX_STEM = 120


def safe_stem(text: str) -> str:
    """A file-name stem from server-controlled text: no separators, no dots in front, bounded length, and one
    per text: a text the rule had to change (or shorten) gets ``~`` and a hash of itself, so ``dup/x`` and ``dup_x``
    (or two ids alike in their first 120 characters) never share a file. ``~`` is in no unchanged stem."""
    stem = _UNSAFE.sub("_", text).strip("._")[:_MAX_STEM] or "task"
    if stem == text:
        return stem
    return f"{stem[: _MAX_STEM - 17]}~{hashlib.sha256(text.encode('utf-8', 'surrogatepass')).hexdigest()[:16]}"


def _remove_partials(folder: Path, stem: str) -> None:
    """Remove ``.<stem>-<n>.<hex>.part`` files (the temporary names below): this task's, not those of a task whose
    id starts with this one's (``.<stem>-*`` alone would match ``<stem>-1``'s too)."""
    own = re.compile(rf"\.{re.escape(stem)}-\d+\.[0-9a-f]+\.part")
    for partial in folder.glob(f".{stem}-*.part"):
        if own.fullmatch(partial.name):
            partial.unlink(missing_ok=True)


def _identity(resp: aiohttp.ClientResponse) -> bool:
    return resp.headers.get("Content-Encoding", "identity").strip().lower() in ("", "identity")


def _decide(exc: Exception) -> bool | float:
    """The retry hook for downloads: transient DownloadErrors only, after what the host asked if it did."""
    if not isinstance(exc, errors.DownloadError) or not exc.transient:
        return False
    return exc.retry_after if exc.retry_after is not None else True


class Downloader:
    """Downloads result URLs into a directory, atomically, with retries and a size cap."""

    def __init__(
        self,
        *,
        timeouts: Timeouts,
        retry: RetryPolicy,
        max_connections: int,
        max_bytes: int,
        observers: events.Observers,
    ) -> None:
        self._observers = observers
        self._timeouts = timeouts
        self._retry = retry
        self._max_connections = max_connections
        self.max_bytes = max_bytes
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            # Deliberately a session of its own, without default headers: no key can ride along.
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections),
                headers={"User-Agent": f"evolink-async/{__version__}"},
                trace_configs=list(self._observers.trace_configs) or None,
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def download(
        self, task: Task, directory: str | os.PathLike[str], *, overwrite: bool = False, name: str | None = None
    ) -> list[Path]:
        """Save every result of ``task`` into ``directory`` as ``<name or task id>-<n>.<ext>``; return the paths."""
        with errors.task_context(task.id):
            if not task.results:
                raise errors.DownloadError(f"task is {task.raw_status} and has no results to download")
            folder = Path(directory)
            try:
                await anyio.Path(folder).mkdir(parents=True, exist_ok=True)
                stem = safe_stem(name if name is not None else task.id)
                # Partial files of this task left by a process that was killed mid-download: ours to remove.
                await anyio.to_thread.run_sync(_remove_partials, folder, stem)
                return [
                    await self._download_one(url, folder, f"{stem}-{index}", overwrite)
                    for index, url in enumerate(task.results)
                ]
            except OSError as exc:
                # A local problem (not a folder, no space, no permission): still ours, still with the task id.
                raise errors.DownloadError(f"cannot save into {folder}: {exc}") from exc

    async def _download_one(self, url: str, folder: Path, stem: str, overwrite: bool) -> Path:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise errors.DownloadError(f"refusing to download a non-http(s) URL: {url[:100]!r}", url=url)
        if not overwrite:
            for ext in set(_EXTENSIONS.values()):
                existing = folder / f"{stem}{ext}"
                if await anyio.Path(existing).exists():
                    return existing  # already saved by an earlier run: the final name only ever holds whole files
        return await retrying(
            self._retry,
            lambda: self._fetch(url, folder, stem),
            _decide,
            observers=self._observers,
            what=f"download of {url[:100]}",
        )

    async def _fetch(self, url: str, folder: Path, stem: str) -> Path:
        tmp = folder / f".{stem}.{secrets.token_hex(4)}.part"
        try:
            async with self._answer(url) as (resp, ext), await anyio.open_file(tmp, "wb") as fh:
                async for chunk in self._chunks(resp, url):
                    await fh.write(chunk)
            final = folder / f"{stem}{ext}"
            # Rename is atomic on one file system: the final name never holds a partial image.
            await anyio.to_thread.run_sync(os.replace, tmp, final)
            return final
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            # The network (and a timeout) may recover; a local disk problem will not.
            local = isinstance(exc, OSError) and not isinstance(exc, (aiohttp.ClientError, TimeoutError))
            raise _failed(exc, url, transient=not local) from exc
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.Path(tmp).unlink(missing_ok=True)

    # -- results in memory ---------------------------------------------------------------------------

    async def read(self, task: Task, index: int) -> bytes:
        """The bytes of result ``index`` of ``task``, under the size cap, retried like a download."""
        url = _result_url(task, index)
        with errors.task_context(task.id):
            return await retrying(
                self._retry,
                lambda: self._read_once(url),
                _decide,
                observers=self._observers,
                what=f"read of {url[:100]}",
            )

    async def _read_once(self, url: str) -> bytes:
        try:
            async with self._answer(url) as (resp, _):
                return b"".join([chunk async for chunk in self._chunks(resp, url)])
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _failed(exc, url, transient=True) from exc

    @contextlib.asynccontextmanager
    async def stream(self, task: Task, index: int, chunk_size: int) -> AsyncIterator[ResultStream]:
        """Result ``index`` of ``task`` as chunks: opening is retried; a failure once bytes flowed is raised."""
        url = _result_url(task, index)
        with errors.task_context(task.id):
            opened = await retrying(
                self._retry, lambda: self._open(url), _decide, observers=self._observers, what=f"stream of {url[:100]}"
            )
            try:
                yield ResultStream(self, opened[0], url, opened[1], chunk_size)
            finally:
                opened[0].release()

    async def _open(self, url: str) -> tuple[aiohttp.ClientResponse, str]:
        """GET ``url`` and check the answer (status, type, announced size); the caller releases the response."""
        session = self._get_session()
        timeout = aiohttp.ClientTimeout(total=self._timeouts.request, connect=self._timeouts.connect)
        try:
            resp = await session.get(url, timeout=timeout, proxy=proxy_for(url))
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _failed(exc, url, transient=True) from exc
        try:
            return resp, self._check_answer(resp, url)
        except BaseException:
            resp.release()
            raise

    @contextlib.asynccontextmanager
    async def _answer(self, url: str) -> AsyncIterator[tuple[aiohttp.ClientResponse, str]]:
        """The checked answer for ``url``, released on leaving."""
        resp, ext = await self._open(url)
        try:
            yield resp, ext
        finally:
            resp.release()

    def _check_answer(self, resp: aiohttp.ClientResponse, url: str) -> str:
        if resp.status == 429 or resp.status >= 500:
            raise errors.DownloadError(
                f"result host answered {resp.status}",
                url=url,
                transient=True,
                retry_after=parse_retry_after(resp.headers.get("retry-after")),
            )
        if resp.status != 200:
            raise errors.DownloadError(f"result host answered {resp.status} (links expire after 24 h)", url=url)
        content_type = resp.content_type.lower()
        ext = _EXTENSIONS.get(content_type)
        if ext is None:
            raise errors.DownloadError(f"result is {content_type!r}, not an image, video or audio file", url=url)
        if resp.content_length is not None and resp.content_length > self.max_bytes:
            raise errors.DownloadError(
                f"result is {resp.content_length} bytes, over the {self.max_bytes}-byte cap", url=url
            )
        return ext

    async def _chunks(self, resp: aiohttp.ClientResponse, url: str, chunk_size: int = _CHUNK) -> AsyncIterator[bytes]:
        """The body, chunk by chunk, within the cap; a body shorter than announced is a transient error."""
        size = 0
        async for chunk in resp.content.iter_chunked(chunk_size):
            size += len(chunk)
            if size > self.max_bytes:
                raise errors.DownloadError(f"result exceeds the {self.max_bytes}-byte cap", url=url)
            yield chunk
        # Content-Length counts the bytes on the wire: with a Content-Encoding (gzip, deflate) they are
        # compressed and ``size`` (decoded) is another number, so only an identity body is compared.
        if _identity(resp) and resp.content_length is not None and size != resp.content_length:
            raise errors.DownloadError(
                f"result truncated: {size} of {resp.content_length} bytes", url=url, transient=True
            )


class ResultStream:
    """One result file as it arrives: ``async for chunk in stream`` (see ``AsyncClient.stream_result``).

    ``content_type`` and ``size`` (the announced length, or None) are known before the first chunk. The body
    stays under ``Limits.max_download_bytes``; a failure after the first chunk raises a DownloadError
    (``transient`` when the host cut it short) rather than start again and send those bytes twice.
    """

    def __init__(
        self, downloader: Downloader, resp: aiohttp.ClientResponse, url: str, extension: str, chunk_size: int
    ) -> None:
        self.url = url
        self.content_type = resp.content_type.lower()
        #: The file extension the content type maps to (``.png``, ``.mp4``...).
        self.extension = extension
        self.size = resp.content_length
        self._downloader = downloader
        self._resp = resp
        self._chunk_size = chunk_size
        self.bytes_read = 0

    def __repr__(self) -> str:
        return f"<ResultStream {self.content_type} size={self.size} bytes_read={self.bytes_read}>"

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._downloader._chunks(self._resp, self.url, self._chunk_size):
                self.bytes_read += len(chunk)
                yield chunk
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _failed(exc, self.url, transient=True) from exc


def _failed(exc: BaseException, url: str, *, transient: bool) -> errors.DownloadError:
    return errors.DownloadError(f"download failed: {type(exc).__name__}: {exc}", url=url, transient=transient)


def _result_url(task: Task, index: int) -> str:
    """Result ``index`` of a task, checked before anything is fetched."""
    if not isinstance(task, Task):
        raise errors.ValidationError("task", f"must be a Task (from wait/generate), got {type(task).__name__}")
    if not task.results:
        raise errors.DownloadError(f"task is {task.raw_status} and has no results to read", task_id=task.id)
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(task.results):
        raise errors.ValidationError("index", f"must be an int from 0 to {len(task.results) - 1}, got {index!r}")
    url = task.results[index]
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise errors.DownloadError(f"refusing to read a non-http(s) URL: {url[:100]!r}", url=url, task_id=task.id)
    return url
