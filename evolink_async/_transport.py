"""The one module that talks aiohttp to the API: auth header, JSON in and out, error mapping."""

# Transport.send reads its response variables (and ``started``) only on the paths that bound them, which pyright
# cannot follow (a failure is raised after the except block, on purpose); binding them first would take the
# function past 60 lines.
# pyright: reportPossiblyUnboundVariable=false

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import attrs

from . import errors, events
from ._config import Timeouts
from ._proxy import proxy_for
from ._retry import parse_retry_after
from ._text import REDACTED, id_problem, redact
from ._version import __version__

__all__ = ("MAX_ANSWER_BYTES", "Response", "Transport", "error_from_response", "path_segment")

MAX_ANSWER_BYTES = 16 * 1024 * 1024
"""The most bytes (decoded: after gzip or deflate) read of one API answer. A task, a batch of 50 or a files page
is a few KB to a few hundred KB; an answer past this comes from a broken proxy or a hostile host, is read no
further, and raises MalformedResponseError naming the request."""
_CHUNK = 64 * 1024
_MIN_SCRUBBED = 12
_USER_AGENT = f"evolink-async/{__version__}"
_REQUEST_ID_HEADERS = ("x-request-id", "x-oneapi-request-id")

_STATUS_ERRORS: Mapping[int, type[errors.APIError]] = {
    400: errors.BadRequestError,
    401: errors.AuthenticationError,
    402: errors.InsufficientCreditsError,
    403: errors.PermissionDeniedError,
    404: errors.NotFoundError,
    409: errors.ConflictError,
    413: errors.BadRequestError,
    422: errors.BadRequestError,
    429: errors.RateLimitError,
}


@attrs.frozen
class Response:
    """A decoded 2xx answer."""

    data: Any
    status: int
    request_id: str | None
    headers: Mapping[str, str]


def _request_id(headers: Mapping[str, str]) -> str | None:
    for name in _REQUEST_ID_HEADERS:
        value = headers.get(name)
        if value:
            return value
    return None


def error_from_response(
    status: int,
    headers: Mapping[str, str],
    raw: bytes,
) -> errors.APIError:
    """Map an HTTP error answer (either envelope style, or no JSON at all) to the error tree."""
    request_id = _request_id(headers)
    payload: Any = None
    try:
        payload = json.loads(raw) if raw else None
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser allows
        payload = None
    fields: Mapping[str, Any] = {}
    if isinstance(payload, Mapping):
        inner = payload.get("error")
        fields = inner if isinstance(inner, Mapping) else payload
    message = fields.get("message") or fields.get("msg")
    if not isinstance(message, str) or not message:
        content_type = headers.get("content-type", "unknown type").split(";")[0]
        kind = "JSON" if payload is not None else f"non-JSON ({content_type}, {len(raw)} bytes)"
        message = f"server answered {status} with a {kind} body"
    code = fields.get("code")
    if isinstance(code, (dict, list)):
        code = None
    cls = _STATUS_ERRORS.get(status) or (errors.ServerError if status >= 500 else errors.APIError)
    kwargs: dict[str, Any] = {
        "status": status,
        "code": code,
        "type": fields.get("type") or None,
        "param": fields.get("param") or None,
        "request_id": request_id,
        "body": payload if payload is not None else raw[:500].decode("utf-8", "replace"),
        "fallback_suggestion": _suggestion(fields.get("fallback_suggestion")),
    }
    if cls is errors.RateLimitError:
        return errors.RateLimitError(message, retry_after=parse_retry_after(headers.get("retry-after")), **kwargs)
    return cls(message, **kwargs)


def path_segment(field: str, value: str) -> str:
    """``value`` quoted as one path segment, if it is an id: quoting keeps ``..`` as it is, and the URL library
    then removes it (``/v1/tasks/..`` is ``/v1/``), so a dot segment is refused, never sent with the key."""
    problem = id_problem(value)
    if problem is not None:
        raise errors.ValidationError(field, problem)
    return quote(value, safe="")


def _suggestion(value: Any) -> str | None:
    """The server's ``fallback_suggestion``: printable text, bounded (it reaches terminals and logs)."""
    if not isinstance(value, str):
        return None
    text = "".join(ch if ch.isprintable() else " " for ch in value[:300]).strip()
    return text or None


class Transport:
    """One JSON request to the API at a time: auth, timeouts, error mapping. Retries and pace live above it."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        timeouts: Timeouts,
        max_connections: int,
        observers: events.Observers,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.base_url = base_url
        self.observers = observers
        self._host = urlsplit(base_url).netloc
        self._secret = _Secret(api_key)
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._json_headers = {**self._headers, "Content-Type": "application/json"}
        self._client_timeouts: dict[float, aiohttp.ClientTimeout] = {}
        self.timeouts = timeouts
        self._max_connections = max_connections
        self._session = session
        self._loop: asyncio.AbstractEventLoop | None = None
        self._owns_session = session is None
        # No redirect is followed (the key would follow it). The proxy is read once, as httpx does when a client
        # is made; a session of the caller's keeps its own settings.
        self._options: dict[str, Any] = {
            "allow_redirects": False,
            "proxy": proxy_for(base_url) if session is None else None,
        }
        self.requests_sent = 0
        self.closed = False

    def __repr__(self) -> str:
        return f"<Transport {self.base_url} requests_sent={self.requests_sent}>"

    def _get_session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._max_connections)
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers={"User-Agent": _USER_AGENT},
                trace_configs=list(self.observers.trace_configs) or None,
            )
            self._loop = loop
        elif self._loop is not None and loop is not self._loop:
            # Connections belong to the loop that opened them: say so, rather than aiohttp's "Event loop is
            # closed" (a second asyncio.run() on one client is the usual way here).
            raise errors.ClientStateError(
                "this client was first used in another event loop; create one client per event loop "
                "(or use evolink_async.Client from synchronous code)"
            )
        return self._session

    async def aclose(self) -> None:
        # Marked first: a request still in its retry loop must not open a new session after this.
        self.closed = True
        if self._session is not None and self._owns_session:
            await self._session.close()
        self._session = None

    async def send(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        form: aiohttp.FormData | None = None,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> Response:
        """Send one request (no retry, no pacing); return the decoded 2xx answer or raise its mapped error.

        ``body`` is JSON; ``form`` a multipart form (streamed; aiohttp writes its content type and boundary).
        """
        if not path.startswith("/") or path.startswith("//"):
            # Only a path joins the base URL, so the key goes to the API's own origin and nowhere else.
            raise errors.ConfigurationError(f"refusing to send the API key with path {path[:50]!r}")
        if self.closed:
            raise errors.ClientStateError("this client is closed; create a new AsyncClient")
        headers = self._json_headers if body is not None else self._headers
        data: bytes | aiohttp.FormData | None = body if form is None else form
        if idempotency_key is not None:
            headers = {**headers, "Idempotency-Key": idempotency_key}
        client_timeout = self._client_timeout(timeout if timeout is not None else self.timeouts.request)
        self.requests_sent += 1
        traced = self.observers.active
        if traced:
            self.observers.emit(events.RequestSent(method, self._host, path))
            started = time.monotonic()
        failure: errors.APIConnectionError | None = None
        try:
            async with self._get_session().request(
                method, self.base_url + path, data=data, headers=headers, timeout=client_timeout, **self._options
            ) as resp:
                raw = await _read_capped(resp)
                status = resp.status
                resp_headers: Mapping[str, str] = self._secret.scrub_headers(resp.headers)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            failure = self._connection_error(method, path, client_timeout, exc)
        if traced:
            status_seen = None if failure is not None else status
            error_seen = None if failure is None else type(failure).__name__
            elapsed = time.monotonic() - started
            self.observers.emit(events.RequestAnswered(method, self._host, path, status_seen, elapsed, error_seen))
        if failure is not None:
            # Raised outside the except block: its __context__ stays empty, so aiohttp's error (whose
            # request_info holds our Authorization header) is reachable only where _connection_error allows.
            raise failure
        return self._answer(f"{method} {path}", status, resp_headers, raw)

    def _answer(self, request: str, status: int, headers: Mapping[str, str], raw: bytes | None) -> Response:
        """The decoded 2xx answer to ``request`` ("GET /v1/..."), or the error it maps to."""
        if raw is None:
            raise errors.MalformedResponseError(
                f"{request}: answer {status} is over {MAX_ANSWER_BYTES} bytes (the cap of an API answer); "
                "the rest was not read",
                status=status,
                request_id=_request_id(headers),
            )
        raw = self._secret.scrub(raw)  # the one place server text comes in: no key echoed by a proxy goes further
        if not 200 <= status < 300:
            raise error_from_response(status, headers, raw)
        request_id = _request_id(headers)
        try:
            payload = json.loads(raw)
        except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser allows
            raise errors.MalformedResponseError(
                f"{request}: answer {status} is not valid JSON ({len(raw)} bytes)",
                status=status,
                request_id=request_id,
            ) from None
        return Response(data=payload, status=status, request_id=request_id, headers=headers)

    def _client_timeout(self, total: float) -> aiohttp.ClientTimeout:
        client_timeout = self._client_timeouts.get(total)
        if client_timeout is None:
            client_timeout = aiohttp.ClientTimeout(total=total, connect=self.timeouts.connect)
            self._client_timeouts[total] = client_timeout
        return client_timeout

    def _connection_error(
        self, method: str, path: str, timeout: aiohttp.ClientTimeout, exc: BaseException
    ) -> errors.APIConnectionError:
        """The error for a request that got no usable answer; ``sent`` says whether it may have arrived."""
        err: errors.APIConnectionError
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            err = errors.APITimeoutError(f"connecting to {self.base_url} timed out", maybe_sent=False)
        elif isinstance(exc, (TimeoutError, asyncio.TimeoutError)):  # distinct classes on Python 3.10
            err = errors.APITimeoutError(f"{method} {path} timed out after {timeout.total:g} s")
        elif isinstance(exc, aiohttp.ClientConnectorError):
            err = errors.APIConnectionError(f"cannot connect to {self.base_url}: {exc.os_error}", maybe_sent=False)
        else:
            # A parser error quotes the bytes it choked on: a server's, which may echo the key.
            text = redact(str(exc), self._secret.text)
            err = errors.APIConnectionError(f"{method} {path}: connection failed: {type(exc).__name__}: {text}")
        # aiohttp's response errors keep the request's headers (our Authorization among them) in request_info:
        # such a cause is named in the message, never attached, so no traceback or repr can show the key.
        if not isinstance(exc, aiohttp.ClientResponseError) and not self._secret.found_in(str(exc)):
            err.__cause__ = exc
        return err


async def _read_capped(resp: aiohttp.ClientResponse) -> bytes | None:
    """The decoded body, or None past MAX_ANSWER_BYTES: an endless body or a gzip bomb stops there, and its
    connection is closed (never handed back to the pool with the rest of the body unread)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(_CHUNK):
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            resp.close()
            return None
        chunks.append(chunk)
    return b"".join(chunks)


class _Secret:
    """The API key, and how to take it out of what a server sends back (a proxy may echo the Authorization
    header): in the body as it is, in a JSON string however escaped, in a header."""

    __slots__ = ("_escaped", "_raw", "text")

    def __init__(self, key: str) -> None:
        # A key this short is a test's ("key"), never EvoLink's: scrubbing it would rewrite ordinary words of answers.
        self.text = key if len(key) >= _MIN_SCRUBBED else ""
        self._raw = self.text.encode()
        # The key as a JSON string holds it (with a '"' or a '\\' escaped), as json.dumps writes it again below.
        self._escaped = json.dumps(self.text, ensure_ascii=False)[1:-1]

    def __repr__(self) -> str:
        return "<secret>"

    def found_in(self, text: str) -> bool:
        return bool(self.text) and self.text in text

    def scrub(self, raw: bytes) -> bytes:
        if not self._raw:
            return raw
        if self._raw in raw:
            raw = raw.replace(self._raw, REDACTED.encode())
        if b"\\" not in raw:  # no escape: the key cannot hide behind one (the common case, checked in C)
            return raw
        try:
            # "\\u0073k-..." decodes to the key: decoded and written again, the key shows if it is there.
            text = json.dumps(json.loads(raw), ensure_ascii=False)
        except (ValueError, RecursionError):
            return raw
        return text.replace(self._escaped, REDACTED).encode() if self._escaped in text else raw

    def scrub_headers(self, headers: Mapping[str, str]) -> Mapping[str, str]:
        if not any(self.found_in(value) for value in headers.values()):
            return headers
        # Names lower-cased: this mapping is read with lower-case names only, as aiohttp's is.
        return {name.lower(): redact(value, self.text) for name, value in headers.items()}
