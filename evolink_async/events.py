"""What the SDK does, as events: subscribe to trace, count or log it (``evolink_async.otel`` and the
``evolink_async`` logger use them)::

    def show(event: evo.events.Event) -> None:
        print(event)

    unsubscribe = evo.events.subscribe(show)

Handlers are called synchronously, in the task that does the work (so a handler may use context variables, as
OpenTelemetry's context does); they must be quick and must not raise (an exception is logged and dropped). No
event carries the API key. With no handler and the logger below DEBUG, nothing is built at all.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
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
    "WaitEnded",
    "active",
    "emit",
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

_handlers: list[Callable[[Any], None]] = []


def subscribe(handler: Callable[[Any], None]) -> Callable[[], None]:
    """Call ``handler(event)`` for every event from now on; returns the function that unsubscribes it."""
    _handlers.append(handler)

    def unsubscribe() -> None:
        if handler in _handlers:
            _handlers.remove(handler)

    return unsubscribe


def active() -> bool:
    """Whether anyone listens: emitters build no event otherwise."""
    return bool(_handlers) or log.isEnabledFor(logging.DEBUG)


def emit(event: Any) -> None:
    """Hand ``event`` to every handler, and to the logger (DEBUG, one line)."""
    if log.isEnabledFor(logging.DEBUG):
        log.debug("%s", printable(_line(event)))  # a status or model is server text: one line, no escapes
    for handler in list(_handlers):
        try:
            handler(event)
        except Exception:  # a handler's bug must never break the work it watches
            log.exception("an event handler failed on %s", type(event).__name__)


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
