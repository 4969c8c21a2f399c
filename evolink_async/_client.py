"""AsyncClient: the public face. Every call goes through the task engine; this module only composes."""

from __future__ import annotations

import os
import types
from collections.abc import AsyncIterable, Iterable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import aiohttp

from . import errors, events
from ._api import API
from ._batch import BatchInput, BatchRun, Outcome
from ._config import (
    Limits,
    PollPolicy,
    RetryPolicy,
    Timeouts,
    resolve_api_key,
    resolve_base_url,
    resolve_files_base_url,
)
from ._coordinator import Coordinator
from ._download import Downloader, ResultStream
from ._engine import Engine, OnUpdate, failure_of
from ._files import Files
from ._pace import RateLimiter
from ._requests import (
    GENERATE_OPTIONS,
    SUBMIT_OPTIONS,
    build_request,
    check_idempotency_key,
    check_timeout,
    new_idempotency_key,
)
from ._tasks import Tasks
from ._text import id_problem
from ._transport import Transport
from ._webhooks import CallbackReceiver
from .models import Credits, ImageFields, ImageRequest, ImageSource, Request, Task, UploadedFile

if TYPE_CHECKING:
    from typing import Unpack

__all__ = ("AsyncClient", "OnUpdate")


def _observers_of(
    observers: events.Observers | None, hooks: Iterable[events.Hook], trace_configs: Iterable[aiohttp.TraceConfig]
) -> events.Observers:
    hooks, trace_configs = list(hooks), list(trace_configs)
    if observers is None:
        if hooks or trace_configs:
            return events.Observers(hooks, trace_configs)
        return events.default_observers
    if not isinstance(observers, events.Observers):
        raise errors.ConfigurationError(f"observers must be an events.Observers, got {type(observers).__name__}")
    if hooks or trace_configs:
        raise errors.ConfigurationError("pass observers=, or event_hooks= and trace_configs=, not both")
    return observers


def _check_option_types(**options: object) -> None:
    """Each option value of the type its name says (a mistake here is a ConfigurationError, not an AttributeError)."""
    types_ = {"timeouts": Timeouts, "retry": RetryPolicy, "poll": PollPolicy, "limits": Limits}
    for name, value in options.items():
        cls = types_[name]
        if not isinstance(value, cls):
            raise errors.ConfigurationError(f"{name} must be a {cls.__name__}, got {type(value).__name__}")


def _task_id_of(task: Task | str) -> str:
    task_id = task.id if isinstance(task, Task) else task
    problem = id_problem(task_id)  # "..", "a/b", "\x1b[2J": each would leave its path, or its log line
    if problem is not None:
        raise errors.ValidationError("task_id", problem)
    return task_id


class AsyncClient:
    """The EvoLink client. Use it as ``async with AsyncClient() as client: ...``.

    The API key comes from ``api_key`` or ``EVOLINK_API_KEY``; the base URL from ``base_url``,
    ``EVOLINK_BASE_URL`` or ``https://api.evolink.ai``; the files API's from ``files_base_url``,
    ``EVOLINK_FILES_BASE_URL`` or ``https://files-api.evolink.ai`` (or ``base_url`` when that is not EvoLink's:
    the simulator serves both). Pass ``session`` to use your own ``aiohttp.ClientSession`` (the client then
    leaves it open). ``coordinator`` (e.g. ``evolink_async.redis.RedisCoordinator``) shares the pace, the
    in-flight cap and callbacks with every other process that uses it (one coordinator per client).
    ``event_hooks`` (called with every :mod:`~evolink_async.events` event) and ``trace_configs`` (aiohttp's)
    watch this client alone; ``observers`` shares one :class:`~evolink_async.events.Observers` among clients;
    with none of them, the client uses ``events.default_observers`` (what ``otel.instrument()`` attaches to).
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        files_base_url: str | None = None,
        timeouts: Timeouts = Timeouts(),
        retry: RetryPolicy = RetryPolicy(),
        poll: PollPolicy = PollPolicy(),
        limits: Limits = Limits(),
        session: aiohttp.ClientSession | None = None,
        callback_url: str | None = None,
        allow_local_callback_url: bool = False,
        coordinator: Coordinator | None = None,
        event_hooks: Iterable[events.Hook] = (),
        trace_configs: Iterable[aiohttp.TraceConfig] = (),
        observers: events.Observers | None = None,
    ) -> None:
        _check_option_types(timeouts=timeouts, retry=retry, poll=poll, limits=limits)
        self.base_url = resolve_base_url(base_url)
        self.timeouts, self.retry, self.poll, self.limits = timeouts, retry, poll, limits
        self.callback_url = _check_client_callback_url(callback_url, allow_local_callback_url)
        self.files_base_url = resolve_files_base_url(files_base_url, self.base_url)
        key = resolve_api_key(api_key)
        self.observers = _observers_of(observers, event_hooks, trace_configs)
        transport, files_transport = (
            self._transport(url, key, session) for url in (self.base_url, self.files_base_url)
        )
        self.coordinator = coordinator
        self._rate = RateLimiter(limits.requests_per_second, limits.burst, shared=coordinator)
        self._api = API(transport, self._rate, retry)
        self._files = Files(files_transport, retry)
        self._engine = Engine(
            self._api,
            self._files,
            poll=poll,
            timeouts=timeouts,
            limits=limits,
            callback_url=self.callback_url,
            coordinator=coordinator,
        )
        self._downloader = Downloader(
            timeouts=timeouts,
            retry=retry,
            max_connections=limits.max_download_connections,
            max_bytes=limits.max_download_bytes,
            observers=self.observers,
        )
        self._callbacks: CallbackReceiver | None = None
        self.observers.clients.add(self)

    def _transport(self, base_url: str, key: str, session: aiohttp.ClientSession | None) -> Transport:
        return Transport(
            base_url=base_url,
            api_key=key,
            timeouts=self.timeouts,
            max_connections=self.limits.max_connections,
            observers=self.observers,
            session=session,
        )

    def __repr__(self) -> str:
        queued = self._engine.slots.statistics().tasks_waiting
        return (
            f"<AsyncClient {self.base_url} {self._engine.state} in_flight={self.in_flight}/{self.limits.max_in_flight} "
            f"waiting={self.waiting} queued={queued}>"
        )

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Tasks of this client (``generate`` calls and batch inputs) holding an in-flight slot right now."""
        return int(self._engine.slots.borrowed_tokens)

    @property
    def queued(self) -> int:
        """Requests of this client waiting for their turn in the pace right now."""
        return self._rate.queued

    @property
    def waiting(self) -> int:
        """Tasks the shared poller is watching for someone right now."""
        return self._engine.poller.watching

    @property
    def is_closed(self) -> bool:
        """True once ``aclose()`` has run."""
        return self._engine.state == "closed"

    async def __aenter__(self) -> AsyncClient:
        await self._engine.start()
        return self

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
            await self._engine.finish()

    async def aclose(self) -> None:
        """Stop the poller, fail pending waits with ClientStateError, close the session. Idempotent.

        Safe to call from any task; the ``async with`` block's exit finishes the shutdown.
        """
        if self._engine.state == "closed":
            return
        self._engine.close()
        try:
            await self._api.transport.aclose()
            await self._files.transport.aclose()
        finally:
            await self._downloader.aclose()

    @property
    def callbacks(self) -> CallbackReceiver:
        """This client's receiver of EvoLink callbacks; mount one of its adapters at ``callback_url``."""
        if self._callbacks is None:
            self._callbacks = CallbackReceiver(self._engine)
        return self._callbacks

    @property
    def tasks(self) -> Tasks:
        """The account's tasks as EvoLink lists them: ``async for t in client.tasks.list(status="processing")``."""
        return Tasks(self._api, self._engine.check_open)

    @property
    def files(self) -> Files:
        """EvoLink's files API with this client's key: ``upload``, ``quota``, ``list``, ``delete``."""
        return self._files

    async def upload(
        self, source: ImageSource, *, file_name: str | None = None, upload_path: str | None = None
    ) -> UploadedFile:
        """Upload a local image (a path, bytes or a binary file object, streamed) or re-host an http(s) URL
        through the files API; use the returned ``url`` in ``image_urls``. Files expire after 72 h.

        Checks the type (jpeg, png, gif, webp) before sending; the same content is uploaded once per client.
        ``image_urls`` items may be local files directly: the client uploads them before the create.
        """
        self._engine.check_open()
        return await self._files.upload(source, file_name=file_name, upload_path=upload_path)

    # -- single calls ------------------------------------------------------------------------------

    async def submit(
        self,
        request: Request | str | None = None,
        *,
        prompt: str | None = None,
        idempotency_key: str | None = None,
        **fields: Unpack[ImageFields],
    ) -> Task:
        """Create a task and return it as created (usually pending).

        ``request`` is an ImageRequest, VideoRequest or AudioRequest (its type picks the endpoint), or a prompt
        for an image (or pass ``prompt=``); ``fields`` (size, quality, ...) build or amend it. The create
        always carries an Idempotency-Key (yours or a fresh one) and is retried only
        with it. On an unknown outcome :class:`SubmissionUnknownError` gives the key to resubmit with.
        """
        req = build_request(request, fields, prompt=prompt, options=SUBMIT_OPTIONS)
        key = check_idempotency_key(idempotency_key) if idempotency_key is not None else new_idempotency_key()
        return await self._engine.create(req, key)

    async def get_task(self, task: Task | str) -> Task:
        """Read a task's current state (``GET /v1/tasks/{id}``)."""
        task_id = _task_id_of(task)
        return await self._engine.read(task_id)

    async def credits(self) -> Credits:
        """The account's credit balance (``GET /v1/credits``)."""
        self._engine.check_open()
        return await self._api.credits()

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
        check_timeout(timeout)
        timeout = timeout if timeout is not None else self.timeouts.wait
        known = task if isinstance(task, Task) else None
        final = await self._engine.wait(task_id, known=known, timeout=timeout, on_update=on_update)
        failure = failure_of(final) if raise_on_failure else None
        if failure is not None:
            raise failure
        return final

    async def generate(
        self,
        request: Request | str | None = None,
        *,
        prompt: str | None = None,
        timeout: float | None = None,
        on_update: OnUpdate | None = None,
        idempotency_key: str | None = None,
        **fields: Unpack[ImageFields],
    ) -> Task:
        """Submit a task and wait for it: the one-liner. Returns the completed Task.

        Holds one of ``limits.max_in_flight`` slots from submit until the task is seen final, so at
        most that many of this client's tasks run at once. ``timeout`` (default ``Timeouts.wait``) bounds the
        wait (not the queue for a slot). Errors raised after submit carry the task id.
        """
        req = build_request(request, fields, prompt=prompt, options=GENERATE_OPTIONS)
        check_timeout(timeout)
        timeout = timeout if timeout is not None else self.timeouts.wait
        key = check_idempotency_key(idempotency_key) if idempotency_key is not None else new_idempotency_key()
        self._engine.check_open(needs_poller=True)
        final = await self._engine.run(req, key=key, timeout=timeout, on_update=on_update)
        failure = failure_of(final)
        if failure is not None:
            raise failure
        return final

    # -- many tasks, and their files ----------------------------------------------------------------

    async def download(self, task: Task, directory: str | os.PathLike[str], *, overwrite: bool = False) -> list[Path]:
        """Save the results of a completed ``task`` into ``directory``; return the paths in result order.

        Streams each file to a temporary name and renames it, so a final name never holds half a file (a video
        is never held in memory); checks it is an image, video or audio file under ``limits.max_download_bytes``;
        retries transient errors; never sends the API key. Files are named ``<task id>-<n>.<ext>`` from the
        task id and the content type, never from the URL. An existing file of that name is kept unless
        ``overwrite``. Raises DownloadError.
        """
        if not isinstance(task, Task):
            raise errors.ValidationError("task", f"must be a Task (from wait/generate), got {type(task).__name__}")
        self._engine.check_open()
        return await self._downloader.download(task, directory, overwrite=overwrite)

    async def result_bytes(self, task: Task, index: int = 0) -> bytes:
        """The bytes of result ``index`` of a completed ``task``, in memory (a web app re-serving a picture needs
        no temporary file): the same size cap (``limits.max_download_bytes``), retries and key hygiene as
        :meth:`download`. Raises DownloadError (links expire after 24 h)."""
        self._engine.check_open()
        return await self._downloader.read(task, index)

    def stream_result(
        self, task: Task, index: int = 0, *, chunk_size: int = 64 * 1024
    ) -> AbstractAsyncContextManager[ResultStream]:
        """Result ``index`` of a completed ``task`` as it arrives, for big videos::

            async with client.stream_result(task) as stream:   # stream.content_type, stream.size
                async for chunk in stream:
                    await response.write(chunk)

        Opening is retried like :meth:`download`; the body stays under ``limits.max_download_bytes``, and a
        failure once bytes have flowed raises DownloadError (never a silent restart).
        """
        if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
            raise errors.ValidationError("chunk_size", f"must be an int >= 1, got {chunk_size!r}")
        self._engine.check_open()
        return self._downloader.stream(task, index, chunk_size)

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
        retry_failed: int = 0,
        retry_delay: float = 30.0,
        **fields: Unpack[ImageFields],
    ) -> BatchRun:
        """Generate for many inputs; yield an :class:`Outcome` per input as each completes::

            async with client.generate_many(prompts, download_to="out") as run:
                async for outcome in run:
                    print(outcome.index, outcome.ok, outcome.files or outcome.error)

        ``requests``: prompts, ImageRequests or mappings of request fields, from any (async) iterable,
        consumed lazily. At most ``max_in_flight`` run at once: the batch's own cap, within the client's
        ``Limits.max_in_flight`` (the default; a larger value is a ValidationError, since the client's slots
        bound every task of the client). ``budget`` keeps committed credits within it, plus one task's real
        price at most: the price is learned from the first create of each class (``cost_per_task``, a guess,
        only decides whether that create may go); inputs not submitted get a BudgetExceededError outcome.
        ``download_to`` saves results as they complete. ``journal`` (a SQLite
        file) makes the batch resumable: rerun it with the same inputs and journal, and finished inputs are
        skipped, submitted ones awaited, the rest submitted with their saved Idempotency-Key — no duplicate
        charge after a crash. ``fields`` apply to every input (e.g. ``size="16:9"``). ``timeout`` bounds each
        task's wait. ``retry_failed=n`` gives an input whose task failed with a code EvoLink marks as worth
        resubmitting (``service_error``, ``generation_timeout``...; never a content-policy refusal) up to ``n``
        new, paid tasks, each ``retry_delay`` seconds after the failure and counted against the budget.
        """
        return BatchRun(
            self._engine,
            self._downloader,
            requests,
            max_in_flight=max_in_flight,
            budget=budget,
            cost_per_task=cost_per_task,
            download_to=download_to,
            journal=journal,
            timeout=timeout if timeout is not None else self.timeouts.wait,
            fields=fields,
            retry_failed=retry_failed,
            retry_delay=retry_delay,
        )

    async def generate_all(
        self,
        requests: Iterable[BatchInput] | AsyncIterable[BatchInput],
        *,
        max_in_flight: int | None = None,
        budget: float | None = None,
        cost_per_task: float | None = None,
        download_to: str | os.PathLike[str] | None = None,
        journal: str | os.PathLike[str] | None = None,
        timeout: float | None = None,
        retry_failed: int = 0,
        retry_delay: float = 30.0,
        **fields: Unpack[ImageFields],
    ) -> list[Outcome]:
        """``generate_many`` collected into a list in input order (one Outcome per input)."""
        outcomes: list[Outcome] = []
        run = self.generate_many(
            requests,
            max_in_flight=max_in_flight,
            budget=budget,
            cost_per_task=cost_per_task,
            download_to=download_to,
            journal=journal,
            timeout=timeout,
            retry_failed=retry_failed,
            retry_delay=retry_delay,
            **fields,
        )
        async with run:
            async for outcome in run:
                outcomes.append(outcome)
        outcomes.sort(key=lambda o: o.index)
        return outcomes


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
