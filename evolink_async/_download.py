"""Streaming, atomic downloads of result files (images, videos, audio) — never with the API key.

Results live on a separate, unauthenticated host (``files.evolink.ai``). Downloads therefore use their own
session with no ``Authorization`` header at all and their own connection limit, so that a batch's downloads
never starve its API calls and the key cannot reach a result host even if a URL points back at the API.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import anyio

from . import errors, events
from ._config import RetryPolicy, Timeouts
from ._retry import parse_retry_after, retrying
from ._version import __version__
from .models import Task

__all__ = ("Downloader",)

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

    async def download(self, task: Task, directory: str | os.PathLike[str], *, overwrite: bool = False) -> list[Path]:
        """Save every result of ``task`` into ``directory``; return the paths in result order."""
        with errors.task_context(task.id):
            if not task.results:
                raise errors.DownloadError(f"task is {task.raw_status} and has no results to download")
            folder = Path(directory)
            try:
                await anyio.Path(folder).mkdir(parents=True, exist_ok=True)
                stem = safe_stem(task.id)
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
        session = self._get_session()
        timeout = aiohttp.ClientTimeout(total=self._timeouts.request, connect=self._timeouts.connect)
        tmp = folder / f".{stem}.{secrets.token_hex(4)}.part"
        try:
            async with session.get(url, timeout=timeout) as resp:
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
                    raise errors.DownloadError(
                        f"result is {content_type!r}, not an image, video or audio file", url=url
                    )
                if resp.content_length is not None and resp.content_length > self.max_bytes:
                    raise errors.DownloadError(
                        f"result is {resp.content_length} bytes, over the {self.max_bytes}-byte cap",
                        url=url,
                    )
                size = 0
                async with await anyio.open_file(tmp, "wb") as fh:
                    async for chunk in resp.content.iter_chunked(_CHUNK):
                        size += len(chunk)
                        if size > self.max_bytes:
                            raise errors.DownloadError(f"result exceeds the {self.max_bytes}-byte cap", url=url)
                        await fh.write(chunk)
                # Content-Length counts the bytes on the wire: with a Content-Encoding (gzip, deflate) they are
                # compressed and ``size`` (decoded) is another number, so only an identity body is compared.
                if _identity(resp) and resp.content_length is not None and size != resp.content_length:
                    raise errors.DownloadError(
                        f"result truncated: {size} of {resp.content_length} bytes", url=url, transient=True
                    )
            final = folder / f"{stem}{ext}"
            # Rename is atomic on one file system: the final name never holds a partial image.
            await anyio.to_thread.run_sync(os.replace, tmp, final)
            return final
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            # The network (and a timeout) may recover; a local disk problem will not.
            local = isinstance(exc, OSError) and not isinstance(exc, (aiohttp.ClientError, TimeoutError))
            raise errors.DownloadError(
                f"download failed: {type(exc).__name__}: {exc}", url=url, transient=not local
            ) from exc
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.Path(tmp).unlink(missing_ok=True)
