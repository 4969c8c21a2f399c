"""AsyncClient: lifecycle, submit / get_task / wait / generate / credits, downloads, batches, callbacks."""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import time
import types
from collections import OrderedDict
from collections.abc import AsyncIterable, Awaitable, Callable, Coroutine, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import anyio

from . import errors
from ._batch import BatchInput, BatchRun, Outcome
from ._config import Limits, PollPolicy, RetryPolicy, Timeouts, resolve_api_key, resolve_base_url
from ._converter import request_to_wire, structure_credits, structure_task
from ._download import Downloader
from ._http import HTTPClient
from ._limits import RateLimiter
from ._poller import Poller
from ._requests import Slot, build_request, check_idempotency_key, new_idempotency_key
from ._webhooks import CallbackReceiver
from .models import Credits, ImageRequest, Task, TaskStatus

__all__ = ("AsyncClient", "OnUpdate")

log = logging.getLogger("evolink_async")

#: ``on_update`` callbacks get each new state of the task; they may be plain or async functions.
OnUpdate = Callable[[Task], "Awaitable[None] | None"]


def _task_id_of(task: Task | str) -> str:
    task_id = task.id if isinstance(task, Task) else task
    if not isinstance(task_id, str) or not task_id.strip():
        raise errors.ValidationError("task_id", f"must be a non-empty string, got {task_id!r}")
    return task_id


def _add_task_note(exc: BaseException, task_id: str) -> None:
    # A user's own exception (from on_update) cannot carry our attribute; a note keeps the id visible.
    add_note = getattr(exc, "add_note", None)
    if add_note is not None and not isinstance(exc, errors.EvolinkError):
        add_note(f"evolink task_id={task_id}")


class AsyncClient:
    """The EvoLink client. Use it as ``async with AsyncClient() as client: ...``.

    The API key comes from ``api_key`` or ``EVOLINK_API_KEY``; the base URL from ``base_url``,
    ``EVOLINK_BASE_URL`` or ``https://api.evolink.ai``. Pass ``session`` to use your own
    ``aiohttp.ClientSession`` (the client then leaves it open).
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeouts: Timeouts = Timeouts(),
        retry: RetryPolicy = RetryPolicy(),
        poll: PollPolicy = PollPolicy(),
        limits: Limits = Limits(),
        session: aiohttp.ClientSession | None = None,
        callback_url: str | None = None,
        allow_local_callback_url: bool = False,
    ) -> None:
        for name, value, cls in (
            ("timeouts", timeouts, Timeouts),
            ("retry", retry, RetryPolicy),
            ("poll", poll, PollPolicy),
            ("limits", limits, Limits),
        ):
            if not isinstance(value, cls):
                raise errors.ConfigurationError(f"{name} must be a {cls.__name__}, got {type(value).__name__}")
        self.base_url = resolve_base_url(base_url)
        self.timeouts = timeouts
        self.retry = retry
        self.poll = poll
        self.limits = limits
        self._rate = RateLimiter(limits.requests_per_second, limits.burst)
        self._http = HTTPClient(
            base_url=self.base_url,
            api_key=resolve_api_key(api_key),
            timeouts=timeouts,
            retry=retry,
            limiter=self._rate,
            max_connections=limits.max_connections,
            session=session,
        )
        self._poller = Poller(self._http, poll, timeouts)
        self._downloader = Downloader(
            timeouts=timeouts,
            retry=retry,
            max_connections=limits.max_download_connections,
            max_bytes=limits.max_download_bytes,
        )
        self._in_flight = anyio.CapacityLimiter(limits.max_in_flight)
        self._task_group: anyio.abc.TaskGroup | None = None
        # The poller's own scope: aclose() may run in any task, and cancelling this scope stops only the
        # poller, whereas the task group's scope also covers the body of the caller's ``async with``.
        # Made in __aenter__: a CancelScope needs a running event loop, the constructor does not.
        self._poller_scope: anyio.CancelScope | None = None
        self._state = "new"  # new -> open -> closed
        self.callback_url = _check_client_callback_url(callback_url, allow_local_callback_url)
        self._callbacks: CallbackReceiver | None = None
        # Tasks created with our callback URL (bounded: the oldest are forgotten, they then poll normally).
        # The value is True once a callback for it arrived before anyone waited.
        self._callback_ids: OrderedDict[str, bool] = OrderedDict()

    def __repr__(self) -> str:
        return (
            f"<AsyncClient {self.base_url} {self._state} in_flight={self.in_flight}/{self.limits.max_in_flight} "
            f"waiting={self._poller.watching} queued={self._in_flight.statistics().tasks_waiting}>"
        )

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Tasks that ``generate`` calls of this client hold a slot for right now."""
        return int(self._in_flight.borrowed_tokens)

    @property
    def waiting(self) -> int:
        """Tasks the shared poller is watching for someone right now."""
        return self._poller.watching

    @property
    def is_closed(self) -> bool:
        """True once ``aclose()`` has run."""
        return self._state == "closed"

    async def __aenter__(self) -> AsyncClient:
        if self._state != "new":
            raise errors.ClientStateError(f"this client is {self._state}; a client can be entered only once")
        self._poller_scope = anyio.CancelScope()
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        self._task_group.start_soon(self._run_poller, self._poller_scope)
        self._state = "open"
        return self

    async def _run_poller(self, scope: anyio.CancelScope) -> None:
        with scope:
            await self._poller.run()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        try:
            await self.aclose()
        finally:
            # The task group is left here, in the task and scope that entered it, never in aclose():
            # aclose() may be called from another task or a nested task group, where exiting (or
            # cancelling) this scope would corrupt the caller's cancel scopes.
            task_group, self._task_group = self._task_group, None
            if task_group is not None:
                task_group.cancel_scope.cancel()
                await task_group.__aexit__(None, None, None)

    async def aclose(self) -> None:
        """Stop the poller, fail pending waits with ClientStateError, close the session. Idempotent.

        Safe to call from any task; the ``async with`` block's exit finishes the shutdown.
        """
        if self._state == "closed":
            return
        self._state = "closed"
        self._poller.close(errors.ClientStateError("the client was closed while waiting for this task"))
        if self._poller_scope is not None:
            self._poller_scope.cancel()
        try:
            await self._http.aclose()
        finally:
            await self._downloader.aclose()

    @property
    def callbacks(self) -> CallbackReceiver:
        """This client's receiver of EvoLink callbacks; mount one of its adapters at ``callback_url``."""
        if self._callbacks is None:
            self._callbacks = CallbackReceiver(self)
        return self._callbacks

    def _spawn(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> bool:
        """Run ``fn`` in the client's task group (work that must outlive a web request); False if closed."""
        if self._state != "open" or self._task_group is None:
            return False
        self._task_group.start_soon(fn, *args)
        return True

    def _check_open(self, *, needs_poller: bool = False) -> None:
        if self._state == "closed":
            raise errors.ClientStateError("this client is closed; create a new AsyncClient")
        if needs_poller and self._state != "open":
            raise errors.ClientStateError(
                "waiting needs the shared poller: use `async with AsyncClient() as client:` first"
            )

    # -- single calls ------------------------------------------------------------------------------

    async def submit(self, request: ImageRequest | str, *, idempotency_key: str | None = None, **fields: Any) -> Task:
        """Create a task (``POST /v1/images/generations``) and return it as created (usually pending).

        ``request`` is an ImageRequest or a prompt; ``fields`` (size, quality, ...) build or amend it.
        The create always carries an Idempotency-Key (yours or a fresh one) and is retried only with it.
        On an unknown outcome :class:`SubmissionUnknownError` gives the key to resubmit with.
        """
        req = build_request(request, fields)
        key = check_idempotency_key(idempotency_key) if idempotency_key is not None else new_idempotency_key()
        self._check_open()
        body = request_to_wire(req)
        # The client's callback URL was checked when the client was made (it may be a local test URL).
        with_callback = self.callback_url is not None and req.callback_url is None
        if with_callback:
            body["callback_url"] = self.callback_url
        resp = await self._http.request("POST", "/v1/images/generations", json_body=body, idempotency_key=key)
        try:
            task = structure_task(resp.data, request_id=resp.request_id)
        except Exception as exc:
            # The task may exist; only the key can find it again without paying twice.
            raise errors.SubmissionUnknownError(
                f"create answered but the task could not be read: {exc}", idempotency_key=key
            ) from exc
        if with_callback:
            self._callback_ids[task.id] = False
            if len(self._callback_ids) > _MAX_CALLBACK_IDS:
                self._callback_ids.popitem(last=False)
        if resp.headers.get("idempotency-replayed", "").lower() == "true":
            log.info("create replayed by the server: task %s (idempotency key reused)", task.id)
        return task

    async def get_task(self, task: Task | str) -> Task:
        """Read a task's current state (``GET /v1/tasks/{id}``)."""
        task_id = _task_id_of(task)
        self._check_open()
        resp = await self._http.request("GET", f"/v1/tasks/{quote(task_id, safe='')}", task_id=task_id)
        try:
            result = structure_task(resp.data, request_id=resp.request_id)
        except errors.MalformedResponseError as exc:
            exc.task_id = task_id
            raise
        self._poller.observe(result)
        return result

    async def credits(self) -> Credits:
        """The account's credit balance (``GET /v1/credits``)."""
        self._check_open()
        resp = await self._http.request("GET", "/v1/credits")
        return structure_credits(resp.data, request_id=resp.request_id)

    async def wait(
        self,
        task: Task | str,
        *,
        timeout: float | None = None,
        on_update: OnUpdate | None = None,
        raise_on_failure: bool = True,
    ) -> Task:
        """Wait until the task is final, through the client's shared poller, and return it.

        Raises TaskFailedError / TaskCancelledError for failed and cancelled tasks (unless
        ``raise_on_failure=False``, which returns them), WaitTimeoutError after ``timeout`` seconds.
        ``on_update`` is called with each new state (status or progress changed). Cancelling the
        wait stops watching the task; the task itself goes on at the server.
        """
        task_id = _task_id_of(task)
        if timeout is not None and not timeout > 0:
            raise errors.ValidationError("timeout", f"must be > 0 seconds or None, got {timeout!r}")
        self._check_open(needs_poller=True)
        known = task if isinstance(task, Task) else None
        return await self._wait(task_id, known, None, timeout, on_update, raise_on_failure)

    async def _wait(
        self,
        task_id: str,
        known: Task | None,
        submitted_at: float | None,
        timeout: float | None,
        on_update: OnUpdate | None,
        raise_on_failure: bool,
    ) -> Task:
        try:
            callback = task_id in self._callback_ids
            announced = bool(self._callback_ids.get(task_id))
            if announced:
                known, submitted_at = None, None  # its callback already came: read it now
            w = self._poller.watch(task_id, known, submitted_at=submitted_at, callback=callback)
        except errors.EvolinkError as exc:
            exc.task_id = task_id  # e.g. closed right after submit: the task exists, keep its id
            raise
        w.announced = w.announced or announced
        try:
            with anyio.move_on_after(timeout) if timeout is not None else _NO_SCOPE as scope:
                seen: tuple[str, int | None] | None = None
                while True:
                    current = w.task
                    if on_update is not None and current is not None:
                        state = (current.raw_status, current.progress)
                        if state != seen:
                            seen = state
                            result = on_update(current)
                            if inspect.isawaitable(result):
                                await result
                    if w.error is not None:
                        raise w.error
                    if current is not None and current.is_final:
                        break
                    if w.task is current and w.error is None:
                        await w.changed().wait()
            if scope is not None and scope.cancelled_caught:
                raise errors.WaitTimeoutError(task_id, timeout or 0.0, w.task)
        except BaseException as exc:
            _add_task_note(exc, task_id)
            raise
        finally:
            self._poller.release(w)
        final = w.task
        assert final is not None
        assert final.is_final
        if raise_on_failure and final.status is TaskStatus.CANCELLED:
            raise errors.TaskCancelledError(final)
        if raise_on_failure and final.status is TaskStatus.FAILED:
            raise errors.TaskFailedError(final)
        return final

    async def generate(
        self,
        request: ImageRequest | str,
        *,
        timeout: float | None = None,
        on_update: OnUpdate | None = None,
        idempotency_key: str | None = None,
        **fields: Any,
    ) -> Task:
        """Submit a task and wait for it: the one-liner. Returns the completed Task.

        Holds one of ``limits.max_in_flight`` slots from submit until the task is seen final, so at
        most that many of this client's tasks run at once. ``timeout`` bounds the wait (not the queue
        for a slot). Errors raised after submit carry the task id.
        """
        req = build_request(request, fields)
        if timeout is not None and not timeout > 0:
            raise errors.ValidationError("timeout", f"must be > 0 seconds or None, got {timeout!r}")
        self._check_open(needs_poller=True)
        async with Slot(self._in_flight):
            task = await self.submit(req, idempotency_key=idempotency_key)
            return await self._wait(task.id, task, time.monotonic(), timeout, on_update, True)

    # -- many tasks, and their files ----------------------------------------------------------------

    async def download(self, task: Task, directory: str | os.PathLike[str], *, overwrite: bool = False) -> list[Path]:
        """Save the results of a completed ``task`` into ``directory``; return the paths in result order.

        Streams each file to a temporary name and renames it, so a final name never holds half an image;
        checks it is an image under ``limits.max_download_bytes``; retries transient errors; never sends the
        API key. Files are named ``<task id>-<n>.<ext>`` from the task id and the content type, never from
        the URL. An existing file of that name is kept unless ``overwrite``. Raises DownloadError.
        """
        if not isinstance(task, Task):
            raise errors.ValidationError("task", f"must be a Task (from wait/generate), got {type(task).__name__}")
        self._check_open()
        return await self._downloader.download(task, directory, overwrite=overwrite)

    def generate_many(
        self,
        requests: Iterable[BatchInput] | AsyncIterable[BatchInput],
        *,
        max_in_flight: int | None = None,
        budget: float | None = None,
        cost_per_task: float | None = None,
        download_to: str | os.PathLike[str] | None = None,
        journal: str | os.PathLike[str] | None = None,
        timeout: float | None = None,
        **fields: Any,
    ) -> BatchRun:
        """Generate for many inputs; yield an :class:`Outcome` per input as each completes::

            async with client.generate_many(prompts, download_to="out") as run:
                async for outcome in run:
                    print(outcome.index, outcome.ok, outcome.files or outcome.error)

        ``requests``: prompts, ImageRequests or mappings of request fields, from any (async) iterable,
        consumed lazily. At most ``max_in_flight`` (default: the client's) run at once. ``budget`` stops
        submitting before committed credits would exceed it (the price is learned from the first create, or
        given as ``cost_per_task``); inputs not submitted get a BudgetExceededError outcome. ``download_to``
        saves results as they complete. ``journal`` (a SQLite file) makes the batch resumable: rerun it with
        the same inputs and journal, and finished inputs are skipped, submitted ones awaited, the rest
        submitted with their saved Idempotency-Key — no duplicate charge after a crash. ``fields`` apply to
        every input (e.g. ``size="16:9"``). ``timeout`` bounds each task's wait.
        """
        return BatchRun(
            self,
            requests,
            max_in_flight=max_in_flight,
            budget=budget,
            cost_per_task=cost_per_task,
            download_to=download_to,
            journal=journal,
            timeout=timeout,
            fields=fields,
        )

    async def generate_all(
        self, requests: Iterable[BatchInput] | AsyncIterable[BatchInput], **options: Any
    ) -> list[Outcome]:
        """``generate_many`` collected into a list in input order (one Outcome per input)."""
        outcomes: list[Outcome] = []
        async with self.generate_many(requests, **options) as run:
            async for outcome in run:
                outcomes.append(outcome)
        outcomes.sort(key=lambda o: o.index)
        return outcomes


_MAX_CALLBACK_IDS = 100_000
# wait() without a timeout needs no cancel scope (one per wait adds up over a large batch).
_NO_SCOPE: contextlib.nullcontext[None] = contextlib.nullcontext()
_MAX_CALLBACK_URL = 2048


def _check_client_callback_url(url: str | None, allow_local: bool) -> str | None:
    if url is None:
        return None
    if isinstance(url, str) and len(url) > _MAX_CALLBACK_URL:
        # Not relaxed by allow_local: the API refuses such a URL whatever its host.
        raise errors.ConfigurationError(f"callback_url must be at most {_MAX_CALLBACK_URL} characters, got {len(url)}")
    try:
        ImageRequest("x", callback_url=url)
    except errors.ValidationError as exc:
        parts = urlsplit(url) if isinstance(url, str) else None
        # The documented escape hatch: a loopback/private receiver for local testing, still over HTTPS.
        if not (allow_local and parts is not None and parts.scheme == "https" and parts.hostname):
            raise errors.ConfigurationError(
                f"callback_url {exc.message}" + ("" if allow_local else " (allow_local_callback_url=True for tests)")
            ) from None
    return url
