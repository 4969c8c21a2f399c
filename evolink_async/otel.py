"""OpenTelemetry tracing and metrics for evolink_async (``pip install 'evolink-async[otel]'``)::

    from evolink_async import otel
    otel.instrument()            # every client that uses events.default_observers (the global providers unless given)
    otel.instrument(observers=client.observers, tracer_provider=...)   # or one client's (or a group's) observers

Trace configs reach the HTTP sessions a client opens after ``instrument()``: call it before the first request.

- HTTP spans (and HTTP client metrics) come from ``opentelemetry-instrumentation-aiohttp-client``, on the SDK's own
  sessions only (API, files API and downloads), never on the application's other aiohttp sessions.
- One span per task, from the create to the final state, following the GenAI semantic conventions where they fit:
  ``gen_ai.operation.name`` (``generate_content``), ``gen_ai.provider.name`` (``evolink``),
  ``gen_ai.request.model``, ``gen_ai.response.id`` (the task id), ``gen_ai.output.type`` (image, video, audio),
  plus ``evolink.task.status``, ``evolink.task.reads``, ``evolink.task.credits``; its create's and its own
  status reads' HTTP spans are its children (reads of many tasks at once, ``POST /v1/tasks/batch``, are not).
  A failed or cancelled task's span has an error status with the task's error code.
- Metrics: ``evolink.task.duration`` (s), ``evolink.task.detection_lag`` (s: from the read before the one that saw
  the task final; an upper bound), ``evolink.task.reads``, ``evolink.requests`` (by method, host and outcome),
  ``evolink.tasks.in_flight`` and ``evolink.requests.queued`` (gauges over the open clients of those observers),
  ``evolink.credits.used``.

No attribute holds the API key: spans and metrics are built from events (``evolink_async.events``), which carry none.
"""

from __future__ import annotations

import contextvars
from collections import OrderedDict
from typing import Any

import attrs

try:
    from opentelemetry import context, metrics, trace
    from opentelemetry.instrumentation.aiohttp_client import create_trace_config
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError("evolink_async.otel needs the otel extra: pip install 'evolink-async[otel]'") from exc

from . import events
from ._version import __version__

__all__ = ("Instrumentation", "instrument")

_MAX_OPEN = 100_000  # task spans kept open at once (a wait that never ended must not grow this forever)
# The span of the create (or read) under way in this task, and the token to detach it with: the start and end
# events of one create come in one task, so a context variable pairs them even when two creates share a key.
_CREATING: contextvars.ContextVar[tuple[Any, Any] | None] = contextvars.ContextVar("evolink_creating", default=None)
_READING: contextvars.ContextVar[Any] = contextvars.ContextVar("evolink_reading", default=None)


@attrs.define(eq=False)
class Instrumentation:
    """What :func:`instrument` set up on one ``Observers``; ``uninstrument()`` stops it (sessions opened
    meanwhile keep their HTTP tracing)."""

    observers: events.Observers
    _unsubscribe: Any
    _config: Any

    def uninstrument(self) -> None:
        self._unsubscribe()
        if self._config in self.observers.trace_configs:
            self.observers.trace_configs.remove(self._config)
        if getattr(self.observers, _ATTRIBUTE, None) is self:
            delattr(self.observers, _ATTRIBUTE)


# Where an Observers keeps its instrumentation: one at a time per observers (two would nest each other's spans).
_ATTRIBUTE = "_otel_instrumentation"


def instrument(
    tracer_provider: Any = None, meter_provider: Any = None, *, observers: events.Observers | None = None
) -> Instrumentation:
    """Trace and measure the clients of ``observers`` (default: ``events.default_observers``, which every client
    made without observers of its own uses); ``None`` providers: the global ones. Calling it again on the same
    observers replaces the previous instrumentation."""
    observers = events.default_observers if observers is None else observers
    previous = getattr(observers, _ATTRIBUTE, None)
    if isinstance(previous, Instrumentation):
        previous.uninstrument()
    config = create_trace_config(tracer_provider=tracer_provider, meter_provider=meter_provider)
    observers.trace_configs.append(config)
    telemetry = _Telemetry(
        trace.get_tracer("evolink_async", __version__, tracer_provider=tracer_provider),
        metrics.get_meter("evolink_async", __version__, meter_provider=meter_provider),
        observers,
    )
    instrumentation = Instrumentation(observers, observers.subscribe(telemetry.on_event), config)
    setattr(observers, _ATTRIBUTE, instrumentation)
    return instrumentation


class _Telemetry:
    """Spans and metrics from the SDK's events."""

    def __init__(self, tracer: Any, meter: Any, observers: events.Observers) -> None:
        self._tracer = tracer
        self._observers = observers
        self._tasks: OrderedDict[str, Any] = OrderedDict()
        self._duration = meter.create_histogram("evolink.task.duration", unit="s", description="submit to final")
        self._lag = meter.create_histogram(
            "evolink.task.detection_lag", unit="s", description="read before the final one to the final one"
        )
        self._reads = meter.create_histogram("evolink.task.reads", unit="{read}", description="status reads per task")
        self._requests = meter.create_counter("evolink.requests", unit="{request}", description="HTTP requests")
        self._credits = meter.create_counter("evolink.credits.used", unit="{credit}", description="credits charged")
        meter.create_observable_gauge("evolink.tasks.in_flight", callbacks=[self._in_flight], unit="{task}")
        meter.create_observable_gauge("evolink.requests.queued", callbacks=[self._queued], unit="{request}")

    def _open_clients(self) -> list[Any]:
        return [client for client in list(self._observers.clients) if not client.is_closed]

    def _in_flight(self, options: Any) -> list[metrics.Observation]:
        return [metrics.Observation(sum(client.in_flight for client in self._open_clients()))]

    def _queued(self, options: Any) -> list[metrics.Observation]:
        return [metrics.Observation(sum(client.queued for client in self._open_clients()))]

    def on_event(self, event: Any) -> None:
        handler = _HANDLERS.get(type(event))
        if handler is not None:
            handler(self, event)

    def _create_started(self, event: events.CreateStarted) -> None:
        span = self._tracer.start_span(
            f"generate_content {event.model}",
            kind=trace.SpanKind.CLIENT,
            attributes={
                "gen_ai.operation.name": "generate_content",
                "gen_ai.provider.name": "evolink",
                "gen_ai.request.model": event.model,
                "gen_ai.output.type": event.kind,
            },
        )
        # The create's HTTP spans (retries too) are made in this task, under this span.
        _CREATING.set((span, context.attach(trace.set_span_in_context(span))))

    def _submitted(self, event: events.TaskSubmitted) -> None:
        span = _end_create()
        if span is None:
            return
        span.set_attribute("gen_ai.response.id", event.task.id)
        if event.replayed:
            span.set_attribute("evolink.create.replayed", True)
        if not event.followed:
            # submit(): the client returns the task and waits for nothing; the span is the create's.
            span.set_attribute("evolink.task.status", event.task.raw_status)
            span.end()
            return
        self._tasks[event.task.id] = span
        if len(self._tasks) > _MAX_OPEN:
            _, oldest = self._tasks.popitem(last=False)
            oldest.end()

    def _create_failed(self, event: events.CreateFailed) -> None:
        span = _end_create()
        if span is None:
            return
        span.record_exception(event.error)
        span.set_status(trace.Status(trace.StatusCode.ERROR, type(event.error).__name__))
        span.end()

    def _read_started(self, event: events.ReadStarted) -> None:
        span = self._tasks.get(event.task_id)
        if span is not None:
            _READING.set(context.attach(trace.set_span_in_context(span)))

    def _read_ended(self, event: events.ReadEnded) -> None:
        token = _READING.get()
        if token is not None:
            _READING.set(None)
            context.detach(token)

    def _updated(self, event: events.TaskUpdated) -> None:
        span = self._tasks.get(event.task.id)
        if span is not None:
            span.add_event(
                "evolink.task.update", {"status": event.task.raw_status, "progress": event.task.progress or 0}
            )

    def _finished(self, event: events.TaskFinished) -> None:
        task = event.task
        attributes = {"gen_ai.request.model": task.model or "", "evolink.task.status": task.raw_status}
        self._duration.record(event.elapsed, attributes)
        self._reads.record(event.reads, attributes)
        if event.since_last_read is not None:
            self._lag.record(event.since_last_read, attributes)
        used = task.usage.credits_used if task.usage is not None else None
        if used:
            self._credits.add(used, {"gen_ai.request.model": task.model or ""})
        span = self._tasks.pop(task.id, None)
        if span is None:
            return
        span.set_attribute("evolink.task.status", task.raw_status)
        span.set_attribute("evolink.task.reads", event.reads)
        if used is not None:
            span.set_attribute("evolink.task.credits", used)
        if task.status.value in ("failed", "cancelled"):
            code = task.error.code if task.error is not None and task.error.code else task.raw_status
            span.set_attribute("error.type", code)
            span.set_status(trace.Status(trace.StatusCode.ERROR, code))
        span.end()

    def _wait_ended(self, event: events.WaitEnded) -> None:
        span = self._tasks.pop(event.task_id, None)
        if span is None:
            return
        span.set_attribute("error.type", type(event.error).__name__)
        span.set_status(trace.Status(trace.StatusCode.ERROR, f"the wait ended: {type(event.error).__name__}"))
        span.end()

    def _answered(self, event: events.RequestAnswered) -> None:
        outcome = str(event.status) if event.status is not None else (event.error or "error")
        self._requests.add(1, {"http.request.method": event.method, "server.address": event.host, "outcome": outcome})


def _end_create() -> Any:
    """The span of the create under way in this task (detached from the context), or None."""
    current = _CREATING.get()
    if current is None:
        return None
    _CREATING.set(None)
    span, token = current
    context.detach(token)
    return span


_HANDLERS: dict[type, Any] = {
    events.CreateStarted: _Telemetry._create_started,
    events.TaskSubmitted: _Telemetry._submitted,
    events.CreateFailed: _Telemetry._create_failed,
    events.ReadStarted: _Telemetry._read_started,
    events.ReadEnded: _Telemetry._read_ended,
    events.TaskUpdated: _Telemetry._updated,
    events.TaskFinished: _Telemetry._finished,
    events.WaitEnded: _Telemetry._wait_ended,
    events.RequestAnswered: _Telemetry._answered,
}
