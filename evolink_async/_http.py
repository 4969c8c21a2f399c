"""The one module that talks aiohttp: auth header, JSON in and out, error mapping, the retry loop."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import anyio
import attrs

from . import errors
from ._config import RetryPolicy, Timeouts
from ._limits import RateLimiter
from ._retry import backoff_delay, parse_retry_after
from ._version import __version__

__all__ = ("HTTPClient", "Response")

log = logging.getLogger("evolink_async")

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


@attrs.frozen
class _Failure:
    """One attempt's error, and whether the request may have reached the server."""

    error: errors.EvolinkError
    sent: bool


def _chain(err: errors.EvolinkError, cause: BaseException) -> errors.EvolinkError:
    # aiohttp's response errors keep the request's headers (our Authorization among them) in request_info:
    # such a cause is named in the message, never attached, so no traceback or repr can show the key.
    if not isinstance(cause, aiohttp.ClientResponseError):
        err.__cause__ = cause
    return err


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
    *,
    task_id: str | None = None,
    idempotency_key: str | None = None,
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
        "task_id": task_id,
        "idempotency_key": idempotency_key,
        "body": payload if payload is not None else raw[:500].decode("utf-8", "replace"),
    }
    if cls is errors.RateLimitError:
        return errors.RateLimitError(message, retry_after=parse_retry_after(headers.get("retry-after")), **kwargs)
    return cls(message, **kwargs)


def _retryable(exc: errors.EvolinkError) -> bool:
    if isinstance(exc, (errors.RateLimitError, errors.ServerError, errors.APIConnectionError)):
        return True
    return isinstance(exc, errors.MalformedResponseError)


def _outcome_unknown(exc: errors.EvolinkError, sent: bool) -> bool:
    """Whether a failed create may still have created a task on the server."""
    if isinstance(exc, errors.RateLimitError):
        return False  # 429 is a refusal
    return sent and isinstance(exc, (errors.ServerError, errors.APIConnectionError, errors.MalformedResponseError))


class HTTPClient:
    """JSON requests to the API with auth, timeouts, pacing and retries."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        timeouts: Timeouts,
        retry: RetryPolicy,
        limiter: RateLimiter,
        max_connections: int,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.base_url = base_url
        self._authorization = f"Bearer {api_key}"
        self._client_timeouts: dict[float, aiohttp.ClientTimeout] = {}
        self.timeouts = timeouts
        self.retry = retry
        self.limiter = limiter
        self._max_connections = max_connections
        self._session = session
        self._owns_session = session is None
        self.requests_sent = 0
        self.closed = False

    def __repr__(self) -> str:
        return f"<HTTPClient {self.base_url} requests_sent={self.requests_sent}>"

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._max_connections)
            self._session = aiohttp.ClientSession(connector=connector, headers={"User-Agent": _USER_AGENT})
        return self._session

    async def aclose(self) -> None:
        # Marked first: a request still in its retry loop must not open a new session after this.
        self.closed = True
        if self._session is not None and self._owns_session:
            await self._session.close()
        self._session = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        idempotency_key: str | None = None,
        timeout: float | None = None,
        task_id: str | None = None,
        max_attempts: int | None = None,
    ) -> Response:
        """Send one API request, retrying transient failures; return the decoded 2xx answer.

        With ``idempotency_key`` the request is a paid create: it is retried only with that key, and
        if its outcome stays unknown, :class:`SubmissionUnknownError` carries the key.
        """
        if not path.startswith("/") or path.startswith("//"):
            # Only a path joins the base URL, so the key goes to the API's own origin and nowhere else.
            raise errors.ConfigurationError(f"refusing to send the API key with path {path[:50]!r}")
        url = self.base_url + path
        headers = {"Authorization": self._authorization}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        if json_body is not None:
            headers["Content-Type"] = "application/json"
        data = json.dumps(json_body, separators=(",", ":")).encode() if json_body is not None else None
        total = timeout if timeout is not None else self.timeouts.request
        client_timeout = self._client_timeouts.get(total)
        if client_timeout is None:
            client_timeout = aiohttp.ClientTimeout(total=total, connect=self.timeouts.connect)
            self._client_timeouts[total] = client_timeout
        attempts = max_attempts if max_attempts is not None else self.retry.max_attempts
        maybe_sent = False
        attempt = 0
        while True:
            attempt += 1
            await self.limiter.acquire()
            if self.closed:
                closed = errors.ClientStateError("this client is closed; create a new AsyncClient")
                closed.task_id = task_id
                if idempotency_key is not None and maybe_sent:
                    raise errors.SubmissionUnknownError(
                        "the client was closed while creating a task; resubmit with the same idempotency_key "
                        "to get the task without paying twice",
                        idempotency_key=idempotency_key,
                    ) from closed
                closed.idempotency_key = idempotency_key
                raise closed
            result = await self._send(method, url, headers, data, client_timeout, task_id, idempotency_key)
            if isinstance(result, Response):
                self.limiter.on_success()
                return result
            failure, sent = result.error, result.sent
            if isinstance(failure, errors.RateLimitError):
                # The pause is capped like the retry delay: a huge Retry-After must not stall every request.
                hint = failure.retry_after
                self.limiter.on_rate_limited(None if hint is None else min(hint, self.retry.max_retry_after))
            maybe_sent = maybe_sent or _outcome_unknown(failure, sent)
            if not _retryable(failure) or attempt >= attempts:
                break
            retry_after = failure.retry_after if isinstance(failure, errors.RateLimitError) else None
            delay = backoff_delay(self.retry, attempt, retry_after)
            log.info(
                "%s %s failed (%s); retry %d/%d in %.2fs", method, path, failure, attempt, attempts - 1, delay
            )
            await anyio.sleep(delay)
        if idempotency_key is not None and maybe_sent:
            raise errors.SubmissionUnknownError(
                f"create outcome unknown after {attempt} attempt(s): {failure}; resubmit with the same "
                "idempotency_key to get the original task without paying twice",
                idempotency_key=idempotency_key,
            ) from failure
        raise failure

    async def _send(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        data: bytes | None,
        timeout: aiohttp.ClientTimeout,
        task_id: str | None,
        idempotency_key: str | None,
    ) -> Response | _Failure:
        session = self._get_session()
        self.requests_sent += 1
        try:
            async with session.request(
                method, url, data=data, headers=headers, timeout=timeout, allow_redirects=False
            ) as resp:
                raw = await resp.read()
                status = resp.status
                resp_headers: Mapping[str, str] = resp.headers
        except aiohttp.ConnectionTimeoutError as exc:
            err: errors.EvolinkError = errors.APITimeoutError(
                f"connecting to {self.base_url} timed out", task_id=task_id, idempotency_key=idempotency_key
            )
            return _Failure(_chain(err, exc), sent=False)
        except (TimeoutError, asyncio.TimeoutError) as exc:  # distinct classes on Python 3.10
            err = errors.APITimeoutError(
                f"{method} {urlsplit(url).path} timed out after {timeout.total:g} s",
                task_id=task_id,
                idempotency_key=idempotency_key,
            )
            return _Failure(_chain(err, exc), sent=True)
        except aiohttp.ClientConnectorError as exc:
            err = errors.APIConnectionError(
                f"cannot connect to {self.base_url}: {exc.os_error}", task_id=task_id, idempotency_key=idempotency_key
            )
            return _Failure(_chain(err, exc), sent=False)
        except (aiohttp.ClientError, OSError) as exc:
            err = errors.APIConnectionError(
                f"{method} {urlsplit(url).path}: connection failed: {type(exc).__name__}: {exc}",
                task_id=task_id,
                idempotency_key=idempotency_key,
            )
            return _Failure(_chain(err, exc), sent=True)
        if not 200 <= status < 300:
            return _Failure(
                error_from_response(status, resp_headers, raw, task_id=task_id, idempotency_key=idempotency_key),
                sent=True,
            )
        request_id = _request_id(resp_headers)
        try:
            payload = json.loads(raw)
        except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser allows
            malformed = errors.MalformedResponseError(
                f"{method} {urlsplit(url).path}: answer {status} is not valid JSON ({len(raw)} bytes)",
                status=status,
                request_id=request_id,
                task_id=task_id,
            )
            return _Failure(malformed, sent=True)
        return Response(data=payload, status=status, request_id=request_id, headers=resp_headers)
