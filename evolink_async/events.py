"""What the SDK does, as events: subscribe to trace, count or log it (``evolink_async.otel`` and the
``evolink_async`` logger use them). Each client has its :class:`Observers` (as httpx has ``event_hooks`` and
aiohttp ``trace_configs``)::

    def show(event: evo.events.Event) -> None:
        print(event)

    client = evo.AsyncClient(event_hooks=[show])          # this client only
    unsubscribe = client.observers.subscribe(show)         # or later, on a client
    unsubscribe = evo.events.subscribe(show)               # every client left to the process default

A client made without ``observers=`` uses :data:`default_observers`, the one process-wide switch (what
``evolink_async.otel.instrument()`` attaches to unless given other observers); a client given its own
``Observers`` (or ``event_hooks``/``trace_configs``) is watched by those alone.

Handlers are called synchronously, in the task that does the work (so a handler may use context variables, as
OpenTelemetry's context does); they must be quick and must not raise (an exception is logged and dropped). No
event carries the API key. With no handler and the logger below DEBUG, nothing is built at all.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Iterable
from typing import Any, TypeAlias

import attrs

from ._text import printable
from .models import Task

__all__ = (
    "CreateFailed",
    "CreateStarted",
    "Event",
    "ReadEnded",
    "ReadStarted",
    "RequestAnswered",
    "RequestSent",
    "RetryScheduled",
    "TaskFinished",
    "TaskSubmitted",
    "TaskUpdated",
    "Observers",
    "WaitEnded",
    "default_observers",
    "subscribe",
)

log = logging.getLogger("evolink_async")


@attrs.frozen
class RequestSent:
    """An HTTP request is about to go out (``host`` is the API's or the files API's)."""

    method: str
    host: str
    path: str


@attrs.frozen
class RequestAnswered:
    """An HTTP request ended: ``status`` (None when no answer came: then ``error`` says why), seconds taken."""

    method: str
    host: str
    path: str
    status: int | None
    elapsed: float
    error: str | None = None


@attrs.frozen
class RetryScheduled:
    """A failed attempt of ``what`` will be retried after ``delay`` seconds (``attempt`` failed, counting from 1)."""

    what: str
    attempt: int
    delay: float
    error: str


@attrs.frozen
class CreateStarted:
    """A create is about to be sent (the task has no id yet: ``idempotency_key`` names it)."""

    idempotency_key: str
    kind: str
    model: str


@attrs.frozen
class TaskSubmitted:
    """A create answered: the task exists. ``elapsed``: seconds the create took (retries included)."""

    idempotency_key: str
    task: Task
    kind: str
    elapsed: float
    replayed: bool
    #: The client waits for it now (``generate``, a batch); False for ``submit``, which returns it.
    followed: bool = False


@attrs.frozen
class CreateFailed:
    """A create ended without a task (refused, or its outcome unknown: ``error``)."""

    idempotency_key: str
    error: BaseException


@attrs.frozen
class ReadStarted:
    """A status read of one task is about to go out (batch reads of many tasks send none)."""

    task_id: str


@attrs.frozen
class ReadEnded:
    """That read ended."""

    task_id: str


@attrs.frozen
class TaskUpdated:
    """A read (or a relayed callback) showed a new state of a task someone waits on (status or progress)."""

    task: Task


@attrs.frozen
class WaitEnded:
    """A wait for a task ended before the task was seen final (a timeout, a read that failed, the client closing)."""

    task_id: str
    error: BaseException


@attrs.frozen
class TaskFinished:
    """A task someone waited on was seen final. ``elapsed``: seconds since it was submitted (or first watched);
    ``reads``: status reads that saw it; ``since_last_read``: seconds since the read before (how late it could
    have been seen at most, were it final just after that read)."""

    task: Task
    elapsed: float
    reads: int
    since_last_read: float | None


#: Any event (for a handler's annotation).
Event: TypeAlias = (
    RequestSent
    | RequestAnswered
    | RetryScheduled
    | CreateStarted
    | TaskSubmitted
    | CreateFailed
    | ReadStarted
    | ReadEnded
    | TaskUpdated
    | TaskFinished
    | WaitEnded
)

Hook: TypeAlias = Callable[[Any], None]


class Observers:
    """What watches the clients that share it: event hooks (called with every event) and aiohttp trace configs
    (given to each HTTP session the clients open from then on). ``clients`` are the open clients using it."""

    def __init__(self, event_hooks: Iterable[Hook] = (), trace_configs: Iterable[Any] = ()) -> None:
        self._hooks: list[Hook] = list(event_hooks)
        self.trace_configs: list[Any] = list(trace_configs)
        self.clients: weakref.WeakSet[Any] = weakref.WeakSet()

    def __repr__(self) -> str:
        return (
            f"<Observers hooks={len(self._hooks)} trace_configs={len(self.trace_configs)} clients={len(self.clients)}>"
        )

    def subscribe(self, hook: Hook) -> Callable[[], None]:
        """Call ``hook(event)`` for every event from now on; returns the function that unsubscribes it."""
        self._hooks.append(hook)

        def unsubscribe() -> None:
            if hook in self._hooks:
                self._hooks.remove(hook)

        return unsubscribe

    @property
    def active(self) -> bool:
        """Whether anyone listens: emitters build no event otherwise."""
        return bool(self._hooks) or log.isEnabledFor(logging.DEBUG)

    def emit(self, event: Any) -> None:
        """Hand ``event`` to every hook, and to the logger (DEBUG, one line)."""
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s", printable(_line(event)))  # a status or model is server text: one line, no escapes
        for hook in list(self._hooks):
            try:
                hook(event)
            except Exception:  # a hook's bug must never break the work it watches
                log.exception("an event handler failed on %s", type(event).__name__)


#: The observers of every client made without its own (the one process-wide switch).
default_observers = Observers()


def subscribe(handler: Hook) -> Callable[[], None]:
    """``default_observers.subscribe(handler)``: every client without observers of its own calls ``handler``."""
    return default_observers.subscribe(handler)


def _line(event: Any) -> str:
    if isinstance(event, RequestAnswered):
        outcome = event.status if event.status is not None else event.error
        return f"{event.method} {event.host}{event.path} -> {outcome} in {event.elapsed * 1000:.1f} ms"
    if isinstance(event, TaskSubmitted):
        replay = " (replayed)" if event.replayed else ""
        return (
            f"task {event.task.id} submitted: {event.kind} {event.task.model} in {event.elapsed * 1000:.1f} ms{replay}"
        )
    if isinstance(event, TaskUpdated):
        return f"task {event.task.id} {event.task.raw_status} {event.task.progress}%"
    if isinstance(event, TaskFinished):
        return f"task {event.task.id} {event.task.raw_status} after {event.elapsed:.2f} s, {event.reads} reads"
    return repr(event)
