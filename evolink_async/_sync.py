"""Client: the synchronous face. The async client runs on an event loop of its own, in a worker thread.

    with evolink_async.Client() as client:
        task = client.generate("a watercolor fox", size="16:9")

It works in plain scripts, in the threads of a sync web server (one client shared by many threads), and inside a
running event loop (a Jupyter cell, sync code called from async code), since its loop is never the caller's.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import threading
import types
from collections.abc import AsyncIterable, Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import anyio.from_thread

from . import errors, events
from ._batch import BatchInput, BatchRun, Outcome
from ._client import AsyncClient
from ._tasks import TaskListing
from .models import (
    Credits,
    FilePage,
    FileQuota,
    ImageFields,
    ImageSource,
    Request,
    Task,
    TaskStatus,
    TaskSummary,
    UploadedFile,
)

if TYPE_CHECKING:
    from contextlib import AbstractContextManager
    from typing import Unpack

__all__ = ("Client",)

T = TypeVar("T")


class Client:
    """The EvoLink client without ``await``: the same options and methods as :class:`AsyncClient`.

    Use it as ``with Client() as client: ...`` (or call :meth:`close`). Thread-safe: every call runs on the
    client's own event loop. Ctrl-C during a call cancels it there (a created task goes on at the server).
    """

    def __init__(self, api_key: str | None = None, **options: Any) -> None:
        self._async = AsyncClient(api_key, **options)  # options checked now, in the caller's thread
        self._lock = threading.Lock()
        self._portal_cm: AbstractContextManager[anyio.from_thread.BlockingPortal] | None = None
        self._portal: anyio.from_thread.BlockingPortal | None = None
        self._client_cm: AbstractContextManager[AsyncClient] | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"<Client {self._async!r}>"

    @property
    def base_url(self) -> str:
        """The API's root URL."""
        return self._async.base_url

    @property
    def files_base_url(self) -> str:
        """The files API's root URL."""
        return self._async.files_base_url

    @property
    def observers(self) -> events.Observers:
        """What watches this client (see :class:`~evolink_async.events.Observers`)."""
        return self._async.observers

    @property
    def files(self) -> SyncFiles:
        """The files API: ``quota()``, ``list()``, ``delete()`` (see :attr:`AsyncClient.files`)."""
        return SyncFiles(self)

    @property
    def callbacks(self) -> SyncCallbacks:
        """The client's receiver of EvoLink callbacks, for a sync web framework (Flask, Django's sync views):
        ``status, answer = client.callbacks.handle(request_body)``."""
        return SyncCallbacks(self)

    @property
    def tasks(self) -> SyncTasks:
        """The account's tasks: ``for t in client.tasks.list(status="processing")`` (see :attr:`AsyncClient.tasks`)."""
        return SyncTasks(self)

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> Client:
        self._start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the client (pending waits in other threads fail with ClientStateError) and stop its loop."""
        with self._lock:
            self._closed = True
            client_cm, self._client_cm = self._client_cm, None
            portal_cm, self._portal_cm = self._portal_cm, None
            portal, self._portal = self._portal, None
        try:
            if client_cm is not None:
                client_cm.__exit__(None, None, None)
        finally:
            if portal_cm is not None:
                if portal is not None:
                    # Batches still open (an unfinished generate_many loop) are cancelled, not waited for.
                    with contextlib.suppress(RuntimeError):
                        portal.call(portal.stop, True)
                portal_cm.__exit__(None, None, None)

    def _start(self) -> anyio.from_thread.BlockingPortal:
        with self._lock:
            if self._closed:
                raise errors.ClientStateError("this client is closed; create a new Client")
            if self._portal is None:
                portal_cm = anyio.from_thread.start_blocking_portal()
                portal = portal_cm.__enter__()
                try:
                    # Entered and left in one task of the portal, as an anyio task group requires.
                    client_cm = portal.wrap_async_context_manager(self._async)
                    client_cm.__enter__()
                except BaseException:
                    portal_cm.__exit__(None, None, None)
                    raise
                self._portal_cm, self._portal, self._client_cm = portal_cm, portal, client_cm
            return self._portal

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` (a coroutine function, or a plain one) on the client's loop."""
        portal = self._start()
        ended = _Ended()
        try:
            future = portal.start_task_soon(_apply, fn, args, kwargs, ended)
        except RuntimeError:  # closed by another thread meanwhile
            raise errors.ClientStateError("this client is closed; create a new Client") from None
        try:
            while True:
                try:
                    # In short slices: an untimed wait on a lock does not let Ctrl-C through on every platform.
                    return future.result(timeout=0.2)
                except concurrent.futures.TimeoutError:
                    continue
        except KeyboardInterrupt as interrupt:
            future.cancel()  # stops the wait on the client's loop; the task (if created) goes on at EvoLink
            # The cancelled call's error names the task it created (errors.task_context): so does Ctrl-C.
            add_note = getattr(interrupt, "add_note", None)  # Python >= 3.11
            if add_note is not None and ended.wait(_CANCEL_GRACE) and ended.error is not None:
                for note in getattr(ended.error, "__notes__", ()):
                    if note not in getattr(interrupt, "__notes__", ()):
                        add_note(note)
            raise

    # -- the calls -------------------------------------------------------------------------------

    def submit(
        self,
        request: Request | str | None = None,
        *,
        prompt: str | None = None,
        idempotency_key: str | None = None,
        **fields: Unpack[ImageFields],
    ) -> Task:
        """See :meth:`AsyncClient.submit`."""
        task: Task = self._call(self._async.submit, request, prompt=prompt, idempotency_key=idempotency_key, **fields)
        return task

    def generate(
        self,
        request: Request | str | None = None,
        *,
        prompt: str | None = None,
        timeout: float | None = None,
        idempotency_key: str | None = None,
        **fields: Unpack[ImageFields],
    ) -> Task:
        """See :meth:`AsyncClient.generate`."""
        task: Task = self._call(
            self._async.generate, request, prompt=prompt, timeout=timeout, idempotency_key=idempotency_key, **fields
        )
        return task

    def get_task(self, task: Task | str) -> Task:
        """See :meth:`AsyncClient.get_task`."""
        result: Task = self._call(self._async.get_task, task)
        return result

    def wait(self, task: Task | str, *, timeout: float | None = None, raise_on_failure: bool = True) -> Task:
        """See :meth:`AsyncClient.wait`. Interrupted (Ctrl-C), the KeyboardInterrupt names the task."""
        task_id = task.id if isinstance(task, Task) else task
        with errors.task_context(task_id):
            result: Task = self._call(self._async.wait, task, timeout=timeout, raise_on_failure=raise_on_failure)
        return result

    def upload(
        self, source: ImageSource, *, file_name: str | None = None, upload_path: str | None = None
    ) -> UploadedFile:
        """See :meth:`AsyncClient.upload`."""
        uploaded: UploadedFile = self._call(self._async.upload, source, file_name=file_name, upload_path=upload_path)
        return uploaded

    def credits(self) -> Credits:
        """See :meth:`AsyncClient.credits`."""
        result: Credits = self._call(self._async.credits)
        return result

    def download(self, task: Task, directory: str | os.PathLike[str], *, overwrite: bool = False) -> list[Path]:
        """See :meth:`AsyncClient.download`."""
        paths: list[Path] = self._call(self._async.download, task, directory, overwrite=overwrite)
        return paths

    def result_bytes(self, task: Task, index: int = 0) -> bytes:
        """See :meth:`AsyncClient.result_bytes`."""
        data: bytes = self._call(self._async.result_bytes, task, index)
        return data

    def generate_all(self, requests: Iterable[BatchInput], **options: Any) -> list[Outcome]:
        """See :meth:`AsyncClient.generate_all` (the same options)."""
        outcomes: list[Outcome] = self._call(self._async.generate_all, requests, **options)
        return outcomes

    def generate_many(
        self, requests: Iterable[BatchInput] | AsyncIterable[BatchInput], **options: Any
    ) -> Iterator[Outcome]:
        """See :meth:`AsyncClient.generate_many`: a plain iterator of outcomes, as each task completes.

        New inputs are sent only while the loop waits for its next outcome: leaving it (``break``) sends
        nothing more, even while the iterator lives on; closing it (``close()``, or its collection) stops the
        batch, as leaving its ``async with`` does.
        """
        portal = self._start()
        run: BatchRun = self._call(self._async.generate_many, requests, **options)  # made on the client's loop
        run._hold_between_pulls()
        batch = portal.wrap_async_context_manager(run)
        batch.__enter__()
        try:
            while True:
                try:
                    outcome: Outcome = self._call(run._pull)
                except StopAsyncIteration:
                    return
                yield outcome
        finally:
            with contextlib.suppress(RuntimeError):  # the client (and the batch with it) was closed first
                batch.__exit__(None, None, None)


class SyncFiles:
    """The files API of a sync :class:`Client` (``client.files``)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def quota(self) -> FileQuota:
        """See :meth:`Files.quota`."""
        quota: FileQuota = self._client._call(lambda: self._client._async.files.quota())
        return quota

    def list(self, *, page: int = 1, page_size: int = 20) -> FilePage:
        """See :meth:`Files.list`."""
        found: FilePage = self._client._call(lambda: self._client._async.files.list(page=page, page_size=page_size))
        return found

    def delete(self, file: UploadedFile | str) -> None:
        """See :meth:`Files.delete`."""
        self._client._call(lambda: self._client._async.files.delete(file))


# How long Ctrl-C waits for the cancelled call to end on the client's loop (it takes a loop iteration or two).
_CANCEL_GRACE = 2.0


class _Ended(threading.Event):
    """Set when a call ends on the client's loop, with the exception it ended with."""

    error: BaseException | None = None


async def _apply(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], ended: _Ended) -> Any:
    try:
        result = fn(*args, **kwargs)
        if isinstance(result, types.CoroutineType):
            return await result
        return result
    except BaseException as exc:
        ended.error = exc
        raise
    finally:
        ended.set()


class SyncCallbacks:
    """The callback receiver of a sync :class:`Client` (``client.callbacks``), safe to call from any thread."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def handle(self, body: bytes) -> tuple[int, dict[str, str]]:
        """See :meth:`CallbackReceiver.handle`: judged on the client's loop, where its waits are; returns (HTTP
        status, JSON answer) at once, and the confirming read runs in the client."""
        answer: tuple[int, dict[str, str]] = self._client._call(self._client._async.callbacks.handle, bytes(body))
        return answer


class SyncTasks:
    """The account's tasks, for a sync :class:`Client` (``client.tasks``)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def list(
        self,
        *,
        status: TaskStatus | str | None = None,
        model: str | None = None,
        since: datetime | float | None = None,
        limit: int | None = None,
        page_size: int = 50,
    ) -> Iterator[TaskSummary]:
        """See :meth:`Tasks.list`: a plain iterator, a page fetched as the loop reaches it.

        Arguments are checked here, before the first ``next()``.
        """
        listing = self._client._async.tasks.list(
            status=status, model=model, since=since, limit=limit, page_size=page_size
        )
        return self._iterate(listing)

    def _iterate(self, listing: TaskListing) -> Iterator[TaskSummary]:
        while True:
            try:
                item: TaskSummary = self._client._call(listing.__anext__)
            except StopAsyncIteration:
                return
            yield item
