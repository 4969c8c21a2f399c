"""The simulator's files API (EvoLink's ``files-api.evolink.ai``): uploads by stream, base64 or URL, list,
quota, delete, and the uploaded files served back. Every answer is the ``{success, code, msg, data}``
envelope; refusals of content (not an image, quota full) come as HTTP 200 with ``success: false``, as
EvoLink's do."""

from __future__ import annotations

import base64
import binascii
import secrets
import warnings
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import attrs
from aiohttp import web

__all__ = ("SimFile", "SimFiles")

_LIFETIME = timedelta(hours=72)
_MAGIC = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF8", "image/gif"))
_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/gif": "gif", "image/webp": "webp"}


def _image_type(data: bytes) -> str | None:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return next((mime for magic, mime in _MAGIC if data.startswith(magic)), None)


@attrs.define(kw_only=True)
class SimFile:
    """One uploaded file, kept in memory."""

    id: str
    name: str
    original_name: str
    data: bytes
    mime_type: str
    upload_path: str
    uploaded: datetime


class _Refused(Exception):
    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


def _ok(data: Any, msg: str = "success") -> web.Response:
    return web.json_response({"success": True, "code": 200, "msg": msg, "data": data})


def _refusal(code: int, msg: str) -> web.Response:
    # The documented HTTP-200 failure: a client that only checks the status gets no URL at all.
    return web.json_response({"success": False, "code": code, "msg": msg})


class SimFiles:
    """The files of one simulator; ``max_files`` is the account's quota, ``max_bytes`` the size per file."""

    def __init__(self, base_url: Callable[[], str], *, max_files: int = 100, max_bytes: int = 20 * 1024 * 1024) -> None:
        self._base_url = base_url
        self.max_files = max_files
        self.max_bytes = max_bytes
        self.files: dict[str, SimFile] = {}
        self.uploads = 0
        self.fetch_session: aiohttp.ClientSession | None = None

    def add_routes(
        self, app: web.Application, wrap: Callable[[Callable[..., Awaitable[web.StreamResponse]]], Any]
    ) -> None:
        """Mount the endpoints; ``wrap`` adds the server's counting, faults and auth."""
        router = app.router
        router.add_post("/api/v1/files/upload/stream", wrap(self._guarded(self._upload_stream)))
        router.add_post("/api/v1/files/upload/base64", wrap(self._guarded(self._upload_base64)))
        router.add_post("/api/v1/files/upload/url", wrap(self._guarded(self._upload_url)))
        router.add_get("/api/v1/files/list", wrap(self._guarded(self._list)))
        router.add_get("/api/v1/files/quota", wrap(self._guarded(self._quota)))
        router.add_delete("/api/v1/files/{file_id}", wrap(self._guarded(self._delete)))
        # The files themselves are public links (no key), as the result files are.
        router.add_get("/uploads/{file_id}/{name}", self._serve)

    def _guarded(self, impl: Callable[[web.Request], Awaitable[web.Response]]) -> Callable[..., Any]:
        async def handler(request: web.Request) -> web.Response:
            try:
                return await impl(request)
            except _Refused as refused:
                return _refusal(refused.code, refused.msg)

        return handler

    # -- uploads -----------------------------------------------------------------------------------------

    def _store(self, data: bytes, name: str | None, upload_path: str | None) -> web.Response:
        mime = _image_type(data)
        if mime is None:
            raise _Refused(400, "Unsupported file type: only jpeg, png, gif and webp images are accepted")
        if len(data) > self.max_bytes:
            raise _Refused(413, f"File too large: {len(data)} bytes, at most {self.max_bytes}")
        if len(self.files) >= self.max_files:
            raise _Refused(403, f"File quota exceeded: {self.max_files} files")
        file_id = "file_" + secrets.token_hex(8)
        original = name or f"upload.{_EXTENSIONS[mime]}"
        stored = f"{file_id}.{_EXTENSIONS[mime]}"
        now = datetime.now(UTC)
        self.files[file_id] = SimFile(
            id=file_id,
            name=stored,
            original_name=original,
            data=data,
            mime_type=mime,
            upload_path=upload_path or "",
            uploaded=now,
        )
        self.uploads += 1
        return _ok(self._describe(self.files[file_id]), "File uploaded successfully")

    def _describe(self, file: SimFile) -> dict[str, Any]:
        url = f"{self._base_url()}/uploads/{file.id}/{file.name}"
        return {
            "file_id": file.id,
            "file_name": file.name,
            "original_name": file.original_name,
            "file_size": len(file.data),
            "mime_type": file.mime_type,
            "upload_path": file.upload_path,
            "file_url": url,
            "download_url": url + "?download=1",
            "upload_time": file.uploaded.isoformat(),
            "expires_at": (file.uploaded + _LIFETIME).isoformat(),
        }

    async def _upload_stream(self, request: web.Request) -> web.Response:
        if not request.content_type.startswith("multipart/"):
            raise _Refused(400, "Expected multipart/form-data with a 'file' field")
        fields: dict[str, str] = {}
        data: bytes | None = None
        filename: str | None = None
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, aiohttp.BodyPartReader):
                continue
            if part.name == "file":
                with warnings.catch_warnings():
                    # aiohttp's own multipart reader calls its deprecated unread_data() on large parts.
                    warnings.simplefilter("ignore", DeprecationWarning)
                    data = bytes(await part.read())
                filename = part.filename
            elif part.name:
                fields[part.name] = await part.text()
        if data is None:
            raise _Refused(400, "Missing the 'file' field")
        return self._store(data, fields.get("file_name") or filename, fields.get("upload_path"))

    async def _json_body(self, request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            raise _Refused(400, "The request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise _Refused(400, "The request body must be a JSON object")
        return body

    async def _upload_base64(self, request: web.Request) -> web.Response:
        body = await self._json_body(request)
        encoded = body.get("base64_data")
        if not isinstance(encoded, str) or not encoded:
            raise _Refused(400, "base64_data is required")
        if encoded.startswith("data:"):
            encoded = encoded.partition(",")[2]
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise _Refused(400, "base64_data is not valid base64") from None
        return self._store(data, body.get("file_name"), body.get("upload_path"))

    async def _upload_url(self, request: web.Request) -> web.Response:
        body = await self._json_body(request)
        url = body.get("file_url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise _Refused(400, "file_url must be an http(s) URL")
        if self.fetch_session is None:
            raise _Refused(503, "the simulator is not running")
        try:
            async with self.fetch_session.get(url, timeout=aiohttp.ClientTimeout(total=10)) as resp:
                if resp.status != 200:
                    raise _Refused(400, f"Could not fetch file_url: HTTP {resp.status}")
                data = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _Refused(400, f"Could not fetch file_url: {type(exc).__name__}") from None
        return self._store(data, body.get("file_name"), body.get("upload_path"))

    # -- the rest ----------------------------------------------------------------------------------------

    async def _list(self, request: web.Request) -> web.Response:
        try:
            page = int(request.query.get("page", "1"))
            size = int(request.query.get("pageSize", "20"))
        except ValueError:
            raise _Refused(400, "page and pageSize must be integers") from None
        if page < 1 or not 1 <= size <= 100:
            raise _Refused(400, "page must be >= 1 and pageSize 1..100")
        chosen = list(self.files.values())[(page - 1) * size : page * size]
        items = [
            {"file_id": f.id, "file_name": f.name, "file_size": len(f.data), "upload_time": f.uploaded.isoformat()}
            for f in chosen
        ]
        return _ok({"total": len(self.files), "files": items})

    async def _quota(self, request: web.Request) -> web.Response:
        used = len(self.files)
        return _ok(
            {
                "user_group": "default",
                "used_files": used,
                "max_files": self.max_files,
                "remain_files": self.max_files - used,
            }
        )

    async def _delete(self, request: web.Request) -> web.Response:
        if self.files.pop(request.match_info["file_id"], None) is None:
            raise _Refused(404, "File not found")
        return _ok(None, "File deleted")

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        file = self.files.get(request.match_info["file_id"])
        if file is None or request.match_info["name"] != file.name:
            return web.Response(status=404, text="Not Found")
        return web.Response(body=file.data, content_type=file.mime_type)
