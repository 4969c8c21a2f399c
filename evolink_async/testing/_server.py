"""The EvoLink simulator: an aiohttp.web server on loopback speaking EvoLink's task API."""

from __future__ import annotations

import asyncio
import functools
import heapq
import itertools
import json
import math
import random
import re
import secrets
import ssl
import string
import time
from collections.abc import Awaitable, Callable, Sequence
from http import HTTPStatus
from types import TracebackType
from typing import Any, Literal, NoReturn, TypeVar

import aiohttp
import attrs
from aiohttp import web

from ._files_api import SimFiles
from ._media import MEDIA_TYPES, media_file
from ._models import CallbackRecord, Fault, RequestRecord, SimStats, SimTask, TaskPlan, directive_plan
from ._png import picture_png
from ._validation import IDEMPOTENCY_KEY, InvalidRequest, price_of, validate_audio, validate_create, validate_video

__all__ = ("FakeEvolink",)

_T = TypeVar("_T", bound="FakeEvolink")
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_Route = Literal["create", "read", "batch", "list", "credits", "files", "uploads"]

_TASK_PREFIX = "task-unified-"
_ID_ALPHABET = string.ascii_lowercase + string.digits
_MAX_BATCH = 50
_MAX_PAGE_SIZE = 100
_FILE_NAME = re.compile(r"(\d+)\.(png|mp4|mp3|wav)")
_CREATE_PATHS = {
    "image": "/v1/images/generations",
    "video": "/v1/videos/generations",
    "audio": "/v1/audios/generations",
}
_VALIDATORS: dict[str, Callable[..., None]] = {
    "image": validate_create,
    "video": validate_video,
    "audio": validate_audio,
}
_MICRO = 1_000_000

_DEFAULT_CODES: dict[int, str] = {
    400: "invalid_request",
    401: "unauthorized",
    402: "insufficient_quota",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "request_too_large",
    429: "rate_limit_exceeded",
    500: "internal_error",
    502: "upstream_error",
    503: "service_unavailable",
    504: "gateway_timeout",
}
_ERROR_TYPES: dict[int, str] = {
    401: "authentication_error",
    402: "insufficient_quota_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
}
_SUGGESTIONS: dict[int, str] = {
    429: "Slow down and retry after a short delay.",
    402: "Top up your credits or raise the key's limit.",
}


def _error_type(status: int) -> str:
    if status in _ERROR_TYPES:
        return _ERROR_TYPES[status]
    return "api_error" if status >= 500 else "invalid_request_error"


def _micro(credits: float) -> int:
    return round(credits * _MICRO)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


async def _send_half(request: web.Request, response: web.Response) -> NoReturn:
    """Send ``response``'s headers (its whole Content-Length) and half its body, then close the connection."""
    body = bytes(response.body) if isinstance(response.body, (bytes, bytearray)) else b""
    stream = web.StreamResponse(status=response.status, headers={"Content-Type": response.content_type})
    stream.content_length = len(body)
    await stream.prepare(request)
    await stream.write(body[: len(body) // 2])
    _drop_connection(request)


def _drop_connection(request: web.Request) -> NoReturn:
    """Close the connection without sending a response.

    aiohttp treats a handler ending in CancelledError like a client that went away: nothing is written,
    the connection is force-closed, nothing is logged. The client sees ``ServerDisconnectedError``.
    """
    transport = request.transport
    if transport is not None:
        transport.close()
    raise asyncio.CancelledError


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


@attrs.define
class _ArmedFault:
    fault: Fault
    left: int


def _html_page(status: int) -> str:
    title = f"{status} {_reason(status)}"
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    )


#: The faults a chaos simulator (``FakeEvolink(chaos=0.2)``) draws from, per route: everything a real API, proxy
#: or network does to a request — rate limits with and without Retry-After (seconds and HTTP-date), 5xx as JSON and
#: as a proxy's HTML page, dropped connections, answers slower than a client's timeout (after the work is done),
#: truncated JSON; for creates also a connection dropped after the task was created.
_API_CHAOS = (
    Fault(kind="status", status=429, retry_after="0"),
    Fault(kind="status", status=429, retry_after="Wed, 21 Oct 2015 07:28:00 GMT"),
    Fault(kind="status", status=429),
    Fault(kind="status", status=500),
    Fault(kind="status", status=503),
    Fault(kind="html", status=502),
    Fault(kind="drop"),
    Fault(kind="slow", delay=1.0),
    Fault(kind="malformed"),
)
CHAOS_FAULTS: dict[str, tuple[Fault, ...]] = {
    "create": (*_API_CHAOS, Fault(kind="drop_after_create")),
    "read": _API_CHAOS,
    "batch": _API_CHAOS,
    "list": _API_CHAOS,
    "credits": _API_CHAOS,
    "files": (
        Fault(kind="status", route="files", status=503),
        Fault(kind="status", route="files", status=429, retry_after="0"),
        Fault(kind="html", route="files", status=502),
        Fault(kind="drop", route="files"),
        Fault(kind="slow", route="files", delay=1.0),
        Fault(kind="truncated", route="files"),
    ),
    "uploads": tuple(attrs.evolve(f, route="uploads") for f in _API_CHAOS),
}


def _check_options(
    error_style: str, callback_retry_delays: Sequence[float], callback_timeout: float, chaos: float
) -> tuple[float, ...]:
    """FakeEvolink's options checked; the callback retry delays as floats."""
    if error_style not in ("string", "int"):
        raise ValueError(f"error_style must be 'string' or 'int', got {error_style!r}")
    delays = tuple(float(delay) for delay in callback_retry_delays)
    if not all(0 <= delay < math.inf for delay in delays):
        raise ValueError(f"callback_retry_delays must be finite and >= 0, got {callback_retry_delays!r}")
    if not 0 < callback_timeout < math.inf:
        raise ValueError(f"callback_timeout must be finite and > 0, got {callback_timeout!r}")
    if not 0.0 <= chaos <= 1.0:
        raise ValueError(f"chaos must be a share of requests between 0 and 1, got {chaos!r}")
    return delays


class FakeEvolink:
    """A faithful, scriptable EvoLink server for tests and demos.

    Start it (``async with FakeEvolink() as fake``), point a client at ``fake.base_url`` with
    ``fake.api_key``, then inspect ``fake.stats`` and ``fake.tasks``. ``plan`` decides each created
    task's fate from the request body (default :func:`directive_plan`); :meth:`inject` queues faults.

    Callbacks: when a task created with a ``callback_url`` ends (completed, failed or cancelled, also via
    :meth:`complete`), the simulator POSTs the task's JSON (what ``GET /v1/tasks/{id}`` returns then; not
    counted as a read) to that URL at the finish time, with ``Content-Type: application/json``, no
    ``Authorization`` (EvoLink documents no signature), ``callback_timeout`` seconds per attempt, redirects
    not followed. Any 2xx is success; otherwise it retries after each of ``callback_retry_delays`` (EvoLink:
    1, 2, 4 s). ``callback_ssl`` verifies HTTPS receivers (e.g. a ``trustme`` CA); ``allow_local_callbacks``
    lets creates name loopback/private HTTPS receivers, which the real API rejects. Set ``lose_callbacks``
    to drop every delivery, or inject ``Fault(route="callback", kind="drop")`` to fail single attempts.
    Tasks that end while the simulator is closed get no callback (counted in ``stats.callbacks_lost``).
    """

    def __init__(
        self,
        *,
        api_key: str = "sk-evo-simulator-key",
        host: str = "127.0.0.1",
        port: int = 0,
        plan: Callable[[dict[str, Any]], TaskPlan] | None = None,
        batch_endpoint: bool = True,
        initial_credits: float = 1000.0,
        error_style: Literal["string", "int"] = "string",
        public_base_url: str | None = None,
        callback_retry_delays: Sequence[float] = (1.0, 2.0, 4.0),
        callback_timeout: float = 10.0,
        callback_ssl: ssl.SSLContext | None = None,
        allow_local_callbacks: bool = False,
        chaos: float = 0.0,
        chaos_seed: int | None = None,
        max_files: int = 100,
    ) -> None:
        delays = _check_options(error_style, callback_retry_delays, callback_timeout, chaos)
        #: The share of requests (API and result files) answered with a random fault of ``CHAOS_FAULTS``.
        self.chaos = chaos
        self._chaos_rng = random.Random(chaos_seed)
        self.api_key = api_key
        self.host = host
        self.port = port
        self.plan: Callable[[dict[str, Any]], TaskPlan] = plan if plan is not None else directive_plan
        self.batch_endpoint = batch_endpoint
        self.error_style: Literal["string", "int"] = error_style
        self.public_base_url = public_base_url.rstrip("/") if public_base_url else None
        #: Seconds to wait before each retry of a failed callback delivery; ``len()`` is the retry count.
        self.callback_retry_delays: tuple[float, ...] = delays
        #: Total seconds allowed for one delivery attempt (connect, send, response head).
        self.callback_timeout = float(callback_timeout)
        #: TLS context verifying callback receivers (``None``: the system's default trust store).
        self.callback_ssl = callback_ssl
        #: Accept ``callback_url`` on loopback/private hosts (HTTPS still required). For local testing only.
        self.allow_local_callbacks = allow_local_callbacks
        #: When true, callbacks are dropped for good: nothing is sent, not even to be retried.
        self.lose_callbacks = False
        self.stats = SimStats()
        self.tasks: dict[str, SimTask] = {}
        self._order: list[SimTask] = []  # creation order, for newest-first listing without sorting
        # Credits are kept in integer micro-credits so that charges and refunds add up exactly.
        self._balance = _micro(initial_credits)
        self._used = 0
        self._running = 0
        self._faults: list[_ArmedFault] = []  # FIFO
        self._idempotency: dict[str, tuple[dict[str, Any], str]] = {}  # key -> (body, task id)
        self._finishing: list[tuple[float, int, SimTask]] = []  # heap of (finish_at, seq, task)
        self._seq = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None
        self._callback_session: aiohttp.ClientSession | None = None
        self._deliveries: set[asyncio.Task[None]] = set()
        #: The files API: ``files_api.files`` holds the uploaded files by id; ``max_files`` is the quota.
        self.files_api = SimFiles(lambda: self.files_base_url, max_files=max_files)

    # -- lifecycle ---------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://host:port`` of the running server."""
        if self._base_url is None:
            raise RuntimeError("FakeEvolink is not started: use 'async with FakeEvolink()' or await start()")
        return self._base_url

    @property
    def files_base_url(self) -> str:
        """Base of result-file links: ``public_base_url`` if given, else :attr:`base_url`."""
        return self.public_base_url or self.base_url

    async def start(self) -> None:
        """Bind the port and start serving."""
        if self._runner is not None:
            raise RuntimeError("FakeEvolink is already started")
        self._loop = asyncio.get_running_loop()
        # Uploads of real photos: well over aiohttp's default 1 MiB body limit (the files API checks its own).
        app = web.Application(middlewares=[self._middleware], client_max_size=64 * 1024 * 1024)
        route = self._route
        for kind, path in _CREATE_PATHS.items():
            app.router.add_post(path, route("create", functools.partial(self._create, kind=kind)))
        app.router.add_post("/v1/tasks/batch", route("batch", self._batch))
        app.router.add_get("/v1/tasks", route("list", self._list))
        app.router.add_get("/v1/tasks/{task_id}", route("read", self._read))
        app.router.add_get("/v1/credits", route("credits", self._credits))
        app.router.add_get("/files/{task_id}/{name}", route("files", self._file))
        self.files_api.add_routes(app, functools.partial(route, "uploads"))
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.25)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        # No cookies kept between receivers, no proxy settings from the environment, no pool limit
        # (each delivery has its own timeout, which must not include waiting for a pooled connection).
        self._callback_session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
        )
        self.files_api.fetch_session = self._callback_session
        port = runner.addresses[0][1]
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.port = port
        self._base_url = f"http://{host}:{port}"
        self._schedule()

    async def close(self) -> None:
        """Stop serving and close open connections; cancel pending callback deliveries.

        Tasks and stats stay readable.
        """
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._timer_at = math.inf
        session, self._callback_session = self._callback_session, None  # no new deliveries from here on
        deliveries = list(self._deliveries)
        for delivery in deliveries:
            delivery.cancel()
        try:
            if deliveries:
                await asyncio.gather(*deliveries, return_exceptions=True)
            runner, self._runner = self._runner, None
            if runner is not None:
                await runner.cleanup()
        finally:
            if session is not None:
                await session.close()
            self._loop = None

    async def __aenter__(self: _T) -> _T:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        where = self._base_url if self._runner is not None else "not started"
        return (
            f"<FakeEvolink {where} tasks={len(self.tasks)} running={self._running} credits={self._balance / _MICRO:g}>"
        )

    # -- test controls -----------------------------------------------------------------------------------

    @property
    def credits(self) -> float:
        """Remaining balance. Assign to change it (e.g. ``fake.credits = 0`` to provoke 402)."""
        self._settle(time.monotonic())
        return self._balance / _MICRO

    @credits.setter
    def credits(self, value: float) -> None:
        self._balance = _micro(value)

    def inject(self, fault: Fault) -> None:
        """Queue ``fault``; it hits the next ``fault.times`` matching requests (FIFO among faults)."""
        self._faults.append(_ArmedFault(fault, fault.times))

    def clear_faults(self) -> None:
        """Forget all queued faults."""
        self._faults.clear()

    @property
    def pending_faults(self) -> tuple[Fault, ...]:
        """Queued faults not yet used up."""
        return tuple(armed.fault for armed in self._faults)

    def complete(self, task_id: str) -> None:
        """Finish ``task_id`` now with its planned outcome (a ``never`` task completes). No-op if final."""
        task = self.tasks[task_id]
        now = time.monotonic()
        if task.settled or task.finish_at <= now:
            return
        task.finish_at = now
        task.forced = True
        heapq.heappush(self._finishing, (now, next(self._seq), task))
        self._settle(now)
        self._schedule()

    async def wait_callbacks_idle(self, timeout: float = 5.0) -> None:
        """Return once no callback delivery is pending (retries included); ``TimeoutError`` after ``timeout`` s.

        Tasks whose finish time has passed are settled first, so their deliveries count as pending; tasks
        still running do not (wait for them to end first, e.g. by polling or sleeping past their duration).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self._settle(time.monotonic())
        while self._deliveries:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"{len(self._deliveries)} callback deliveries still pending after {timeout:g} s")
            await asyncio.wait(set(self._deliveries), timeout=remaining)

    def task_view(self, task_id: str) -> dict[str, Any]:
        """The task's JSON as ``GET /v1/tasks/{id}`` would return it now (not counted as a read)."""
        task = self.tasks[task_id]
        now = time.monotonic()
        self._settle(now)
        return task.render(now, self.files_base_url)

    # -- task bookkeeping --------------------------------------------------------------------------------

    def _settle(self, now: float) -> None:
        """Settle every task whose finish time has passed: refunds, running count (and later: callbacks)."""
        heap = self._finishing
        while heap and heap[0][0] <= now:
            finish_at, _, task = heapq.heappop(heap)
            if task.settled or task.finish_at != finish_at:
                continue  # stale entry: complete() moved the finish time earlier
            task.settled = True
            self._running -= 1
            self.stats.running = self._running
            if task.outcome != "completed":
                self._balance += _micro(task.cost)
                self._used -= _micro(task.cost)
            self._on_final(task)

    def _on_final(self, task: SimTask) -> None:
        """Hook called once when a task reaches its final state, after billing: start its callback delivery."""
        url = task.request.get("callback_url")
        if not isinstance(url, str):
            return
        session, loop = self._callback_session, self._loop
        if session is None or loop is None or self.lose_callbacks:
            self.stats.callbacks_lost += 1  # closed simulator, or callbacks lost on purpose
            return
        body = _dumps(task.render(time.monotonic(), self.files_base_url)).encode()
        delivery = loop.create_task(self._deliver(session, task.id, url, body), name=f"evolink-callback-{task.id}")
        self._deliveries.add(delivery)
        delivery.add_done_callback(self._deliveries.discard)

    async def _deliver(self, session: aiohttp.ClientSession, task_id: str, url: str, body: bytes) -> None:
        """Deliver one callback: the first attempt now, then a retry after each delay until a 2xx."""
        stats = self.stats
        attempt = 1
        while True:
            if self.lose_callbacks:
                stats.callbacks_lost += 1
                return
            if await self._attempt_callback(session, task_id, url, body, attempt):
                return
            delays = self.callback_retry_delays
            if attempt > len(delays):
                stats.callbacks_lost += 1
                return
            await asyncio.sleep(delays[attempt - 1])
            attempt += 1

    async def _attempt_callback(
        self, session: aiohttp.ClientSession, task_id: str, url: str, body: bytes, attempt: int
    ) -> bool:
        """One delivery attempt, recorded in the stats; whether the receiver answered 2xx."""
        stats = self.stats
        stats.callbacks_attempted += 1
        fault = self._take_fault("callback")
        if fault is not None:
            stats.faults_applied += 1
            if fault.delay > 0:
                await asyncio.sleep(fault.delay)
        sent = time.monotonic()
        status: int | None = None
        error: str | None = None
        if fault is not None and fault.kind == "drop":
            error = "dropped by an injected fault"
        else:
            try:
                async with session.post(
                    url,
                    data=body,
                    headers={"Content-Type": "application/json"},
                    ssl=self.callback_ssl if self.callback_ssl is not None else True,
                    timeout=aiohttp.ClientTimeout(total=self.callback_timeout),
                    allow_redirects=False,
                ) as response:
                    status = response.status
            except Exception as exc:  # connection refused/reset, TLS failure, timeout, bad URL...
                status = None
                text = str(exc)
                error = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
        delivered = status is not None and 200 <= status < 300
        if delivered:
            stats.callbacks_delivered += 1
        else:
            stats.callbacks_failed += 1
        stats.callback_log.append(CallbackRecord(task_id, url, attempt, status, error, sent))
        return delivered

    def _schedule(self) -> None:
        """Keep one timer armed for the earliest finish, so stats and credits settle without requests."""
        loop = self._loop
        if loop is None or self._runner is None or not self._finishing:
            return
        at = self._finishing[0][0]
        if self._timer is not None:
            if self._timer_at <= at:
                return
            self._timer.cancel()
        self._timer_at = at
        self._timer = loop.call_later(max(0.0, at - time.monotonic()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = math.inf
        self._settle(time.monotonic())
        self._schedule()

    def _new_task_id(self, created: int) -> str:
        while True:
            suffix = "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))
            task_id = f"{_TASK_PREFIX}{created}-{suffix}"
            if task_id not in self.tasks:
                return task_id

    def _create_task(
        self, body: dict[str, Any], plan: TaskPlan, cost: float, key: str | None, kind: str = "image"
    ) -> SimTask:
        now = time.monotonic()
        self._settle(now)
        created = int(time.time())
        finish_at = math.inf if plan.outcome == "never" else now + plan.duration
        task = SimTask(
            id=self._new_task_id(created),
            request=body,
            plan=plan,
            created=created,
            started=now,
            finish_at=finish_at,
            cost=cost,
            idempotency_key=key,
            kind=kind,
        )
        self.tasks[task.id] = task
        self._order.append(task)
        self._balance -= _micro(cost)
        self._used += _micro(cost)
        self._running += 1
        stats = self.stats
        stats.creates += 1
        stats.running = self._running
        stats.max_running = max(stats.max_running, self._running)
        if key is None:
            stats.creates_without_key += 1
        else:
            self._idempotency[key] = (body, task.id)
        if finish_at != math.inf:
            heapq.heappush(self._finishing, (finish_at, next(self._seq), task))
            self._schedule()
        return task

    # -- HTTP plumbing -----------------------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        now = time.monotonic()
        stats = self.stats
        stats.requests += 1
        stats.requests_seen.append(RequestRecord(request.method, request.path, request.headers.copy(), now))
        self._settle(now)
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # the router's 404 / 405
            response = self._error(exc.status, message=f"Invalid URL ({request.method} {request.path})")
        response.headers["x-request-id"] = "req-" + secrets.token_hex(12)
        if response.status == 429:
            stats.rate_limited += 1
        return response

    def _error(
        self,
        status: int,
        *,
        code: str | None = None,
        message: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        """The JSON error envelope, with a string code or (``error_style="int"``) the HTTP status."""
        reason = _reason(status)
        error: dict[str, Any]
        if self.error_style == "int":
            error = {
                "code": status,
                "message": message or reason,
                "type": "" if status == 429 else _error_type(status),
                "param": param or "",
            }
        else:
            error = {"code": code or _DEFAULT_CODES.get(status, "error"), "message": message or reason}
            error["type"] = _error_type(status)
            if param is not None:
                error["param"] = param
            if status in _SUGGESTIONS or status >= 500:
                error["fallback_suggestion"] = _SUGGESTIONS.get(status, "Retry later.")
        return web.json_response({"error": error}, status=status, headers=headers, dumps=_dumps)

    def _take_fault(self, route: _Route | Literal["callback"]) -> Fault | None:
        for index, armed in enumerate(self._faults):
            if armed.fault.matches(route):
                armed.left -= 1
                if armed.left <= 0:
                    del self._faults[index]
                return armed.fault
        if self.chaos and route != "callback" and self._chaos_rng.random() < self.chaos:
            return self._chaos_rng.choice(CHAOS_FAULTS["files" if route == "files" else route])
        return None

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        return scheme.lower() == "bearer" and secrets.compare_digest(token.strip(), self.api_key)

    def _count(self, route: _Route) -> None:
        stats = self.stats
        if route == "create":
            stats.create_requests += 1
        elif route == "read":
            stats.read_requests += 1
        elif route == "batch":
            stats.batch_requests += 1
        elif route == "list":
            stats.list_requests += 1
        elif route == "credits":
            stats.credits_requests += 1
        elif route == "uploads":
            stats.upload_requests += 1
        else:
            stats.file_requests += 1

    def _route(self, route: _Route, impl: _Handler) -> _Handler:
        """Wrap an endpoint: count it, apply a queued fault, check auth, then answer."""

        async def handler(request: web.Request) -> web.StreamResponse:
            self._count(route)
            fault = self._take_fault(route)
            drop_after = False
            if fault is not None:
                self.stats.faults_applied += 1
                if fault.kind == "drop":
                    _drop_connection(request)
                # Read the body before any delay: a client that gives up meanwhile must not turn the
                # fault into a different one (a half-read request the handler can never see).
                await request.read()
                if fault.delay > 0 and fault.kind != "slow":
                    await asyncio.sleep(fault.delay)
                    self._settle(time.monotonic())
                extra = {"Retry-After": fault.retry_after} if fault.retry_after is not None else None
                if fault.kind == "status":
                    return self._error(fault.status, headers=extra)
                if fault.kind == "html":
                    return web.Response(
                        status=fault.status, text=_html_page(fault.status), content_type="text/html", headers=extra
                    )
                if fault.kind == "malformed":
                    return web.Response(
                        status=200,
                        body=b'{"created":1757165031,"id":"task-unified-1757165031-uyu',
                        content_type="application/json",
                    )
                drop_after = fault.kind == "drop_after_create"
            if route != "files" and not self._authorized(request):
                self.stats.auth_failures += 1
                return self._error(401, message="Invalid or missing API key (Authorization: Bearer <key>).")
            response = await impl(request)
            if fault is not None and fault.kind == "truncated" and isinstance(response, web.Response):
                await _send_half(request, response)
            if fault is not None and fault.kind == "slow" and fault.delay > 0:
                # A slow reply: the work is done (a create creates), only the answer is late — the case
                # where a client that timed out must not create the task again when it retries.
                await asyncio.sleep(fault.delay)
            if drop_after:
                _drop_connection(request)
            return response

        return handler

    def _json(self, obj: Any, headers: dict[str, str] | None = None) -> web.Response:
        return web.json_response(obj, headers=headers, dumps=_dumps)

    # -- endpoints ---------------------------------------------------------------------------------------

    async def _create(self, request: web.Request, *, kind: str = "image") -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            return self._error(400, message="The request body is not valid JSON.")
        if not isinstance(body, dict):
            return self._error(400, message="The request body must be a JSON object.")
        key = request.headers.get("Idempotency-Key")
        if key is not None and not IDEMPOTENCY_KEY.fullmatch(key):
            return self._error(
                400, param="Idempotency-Key", message="Idempotency-Key must be 16-96 characters of [A-Za-z0-9._-]."
            )
        try:
            _VALIDATORS[kind](body, allow_local_callbacks=self.allow_local_callbacks)
        except InvalidRequest as exc:
            return self._error(400, param=exc.param, message=exc.message)
        if key is not None and key in self._idempotency:
            original_body, task_id = self._idempotency[key]
            if original_body != body:
                return self._error(
                    409,
                    code="idempotency_conflict",
                    param="Idempotency-Key",
                    message="This Idempotency-Key was already used with a different request body.",
                )
            self.stats.replays += 1
            now = time.monotonic()
            view = self.tasks[task_id].render(now, self.files_base_url)
            return self._json(view, headers={"idempotency-replayed": "true"})
        cost = price_of(body, kind)
        if self._balance < _micro(cost):
            return self._error(
                402,
                code="insufficient_quota",
                message=f"Insufficient credits: {self._balance / _MICRO:.4f} left, this request needs {cost:g}.",
            )
        plan = self.plan(dict(body))
        task = self._create_task(body, plan, cost, key, kind)
        return self._json(task.render_created())

    def _task_id_error(self, task_id: str) -> web.Response | None:
        if not task_id.startswith(_TASK_PREFIX):
            return self._error(400, code="invalid_task_id", param="task_id", message=f"Invalid task id: {task_id}")
        return None

    async def _read(self, request: web.Request) -> web.StreamResponse:
        task_id = request.match_info["task_id"]
        invalid = self._task_id_error(task_id)
        if invalid is not None:
            return invalid
        task = self.tasks.get(task_id)
        if task is None:
            return self._error(404, code="task_not_found", message=f"Task not found: {task_id}")
        self.stats.reads[task_id] += 1
        return self._json(task.render(time.monotonic(), self.files_base_url))

    async def _batch(self, request: web.Request) -> web.StreamResponse:
        if not self.batch_endpoint:
            return self._error(404, message=f"Invalid URL ({request.method} {request.path})")
        try:
            body = json.loads(await request.read())
        except ValueError:
            return self._error(400, message="The request body is not valid JSON.")
        ids = body.get("task_ids") if isinstance(body, dict) else None
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            return self._error(400, param="task_ids", message="task_ids must be a list of task id strings.")
        if len(ids) > _MAX_BATCH:
            return self._error(400, param="task_ids", message=f"task_ids has {len(ids)} items, at most {_MAX_BATCH}.")
        now = time.monotonic()
        files_base = self.files_base_url
        data = []
        reads = self.stats.reads
        for task_id in dict.fromkeys(ids):  # de-duplicated, order kept
            task = self.tasks.get(task_id)
            if task is not None:
                reads[task_id] += 1
                data.append(task.render(now, files_base))
        return self._json({"data": data})

    async def _list(self, request: web.Request) -> web.StreamResponse:
        query = request.query
        try:
            page = int(query.get("page", "1"))
            page_size = int(query.get("page_size", "20"))
        except ValueError:
            return self._error(400, param="page", message="page and page_size must be integers.")
        if page < 1:
            return self._error(400, param="page", message="page must be >= 1.")
        if not 1 <= page_size <= _MAX_PAGE_SIZE:
            return self._error(400, param="page_size", message=f"page_size must be 1..{_MAX_PAGE_SIZE}.")
        status = query.get("status") or None
        model = query.get("model") or None
        now = time.monotonic()
        start = (page - 1) * page_size
        if status is None and model is None:
            total = len(self._order)
            newest = len(self._order) - 1 - start
            chosen = [self._order[i] for i in range(newest, max(newest - page_size, -1), -1)]
            items = [task.summary(now) for task in chosen]
        else:  # filtering needs a scan; listing is rare, unlike reads
            matching = []
            for task in reversed(self._order):
                if model is not None and task.model != model:
                    continue
                entry = task.summary(now)
                if status is None or entry["status"] == status:
                    matching.append(entry)
            total = len(matching)
            items = matching[start : start + page_size]
        return self._json({"data": items, "total": total, "page": page, "page_size": page_size})

    async def _credits(self, request: web.Request) -> web.StreamResponse:
        remaining, used = round(self._balance / _MICRO, 4), round(self._used / _MICRO, 4)
        return self._json(
            {
                "success": True,
                "message": "",
                "data": {
                    "user": {"remaining_credits": remaining, "used_credits": used},
                    "token": {"remaining_credits": remaining, "used_credits": used, "unlimited_credits": False},
                },
            }
        )

    async def _file(self, request: web.Request) -> web.StreamResponse:
        task = self.tasks.get(request.match_info["task_id"])
        match = _FILE_NAME.fullmatch(request.match_info["name"])
        if (
            task is None
            or match is None
            or int(match.group(1)) >= task.plan.num_results
            or task.status_at(time.monotonic()) != "completed"
        ):
            return web.Response(status=404, text="Not Found")
        ext = match.group(2)
        if ext != "png":
            return web.Response(body=media_file(ext), content_type=MEDIA_TYPES[ext])
        return web.Response(body=picture_png(task.prompt, task.size), content_type="image/png")
