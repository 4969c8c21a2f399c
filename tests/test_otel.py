"""Tracing, metrics and events against the simulator, exported to OpenTelemetry's in-memory exporters."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import evolink_async as evo
from evolink_async import events, otel
from evolink_async.testing import FakeEvolink

POLL = evo.PollPolicy(min_interval=0.05, batch=False)


class Telemetry:
    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.metrics = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.metrics])

    def finished(self) -> tuple[ReadableSpan, ...]:
        return tuple(self.spans.get_finished_spans())

    def metric(self, name: str) -> list[Any]:
        data = self.metrics.get_metrics_data()
        points = []
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        points.extend(metric.data.data_points)
        return points


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    t = Telemetry()
    handle = otel.instrument(tracer_provider=t.tracer_provider, meter_provider=t.meter_provider)
    try:
        yield t
    finally:
        handle.uninstrument()


def task_span(t: Telemetry) -> ReadableSpan:
    [span] = [s for s in t.finished() if s.name.startswith("generate_content")]
    return span


async def test_a_task_is_one_span_with_genai_attributes_and_its_http_spans_as_children(
    fake: FakeEvolink, telemetry: Telemetry
) -> None:
    async with evo.AsyncClient(fake.api_key, base_url=fake.base_url, poll=POLL) as client:
        task = await client.generate("a cat [duration:0.2]", size="16:9")
    span = task_span(telemetry)
    assert span.name == "generate_content gemini-3-pro-image-preview"
    attributes = dict(span.attributes or {})
    assert attributes["gen_ai.operation.name"] == "generate_content"
    assert attributes["gen_ai.provider.name"] == "evolink"
    assert attributes["gen_ai.request.model"] == "gemini-3-pro-image-preview"
    assert attributes["gen_ai.response.id"] == task.id
    assert attributes["gen_ai.output.type"] == "image"
    assert attributes["evolink.task.status"] == "completed"
    assert attributes["evolink.task.reads"] == fake.stats.reads[task.id]
    assert attributes["evolink.task.credits"] == task.usage.credits_used  # type: ignore[union-attr]
    http = [s for s in telemetry.finished() if s is not span]
    assert {s.attributes.get("http.request.method") or s.attributes.get("http.method") for s in http} == {"GET", "POST"}
    children = [s for s in http if s.parent is not None and s.parent.span_id == span.context.span_id]
    assert len(children) == len(http), "the create and the task's own reads are the task span's children"
    assert span.status.status_code is not StatusCode.ERROR


async def test_a_failed_task_has_an_error_status_with_its_code(fake: FakeEvolink, telemetry: Telemetry) -> None:
    async with evo.AsyncClient(fake.api_key, base_url=fake.base_url, poll=POLL) as client:
        with pytest.raises(evo.TaskFailedError):
            await client.generate("a cat [duration:0.1] [fail:content_policy_violation]")
    span = task_span(telemetry)
    assert span.status.status_code is StatusCode.ERROR
    assert dict(span.attributes or {})["error.type"] == "content_policy_violation"


async def test_metrics_count_tasks_reads_requests_and_credits(fake: FakeEvolink, telemetry: Telemetry) -> None:
    async with evo.AsyncClient(fake.api_key, base_url=fake.base_url, poll=POLL) as client:
        outcomes = await client.generate_all([f"a cat {i} [duration:0.1]" for i in range(3)])
        [gauge] = telemetry.metric("evolink.tasks.in_flight")
        assert gauge.value == 0
    assert all(o.ok for o in outcomes)
    [duration] = telemetry.metric("evolink.task.duration")
    assert duration.count == 3
    [reads] = telemetry.metric("evolink.task.reads")
    assert reads.sum == sum(fake.stats.reads.values())
    requests = telemetry.metric("evolink.requests")
    assert sum(p.value for p in requests) == fake.stats.requests
    [credits] = telemetry.metric("evolink.credits.used")
    assert credits.value == pytest.approx(sum(o.task.usage.credits_used for o in outcomes))  # type: ignore[union-attr]


async def test_the_key_is_in_no_span_attribute(fake: FakeEvolink, telemetry: Telemetry) -> None:
    async with evo.AsyncClient(fake.api_key, base_url=fake.base_url, poll=POLL) as client:
        await client.generate("a cat [duration:0.1]")
        with pytest.raises(evo.NotFoundError):
            await client.get_task("task-unified-1757165031-zzzzzzzz")
    for span in telemetry.finished():
        text = repr(dict(span.attributes or {})) + repr([e.attributes for e in span.events])
        assert fake.api_key not in text


async def test_events_reach_a_subscriber_and_the_logger(fake: FakeEvolink, caplog: pytest.LogCaptureFixture) -> None:
    seen: list[Any] = []
    unsubscribe = events.subscribe(seen.append)
    try:
        with caplog.at_level(logging.DEBUG, logger="evolink_async"):
            async with evo.AsyncClient(fake.api_key, base_url=fake.base_url, poll=POLL) as client:
                task = await client.generate("a cat [duration:0.2]")
    finally:
        unsubscribe()
    kinds = [type(e).__name__ for e in seen]
    assert kinds[0] == "CreateStarted"
    assert "TaskSubmitted" in kinds
    assert kinds.index("TaskSubmitted") < kinds.index("TaskFinished")
    [finished] = [e for e in seen if isinstance(e, events.TaskFinished)]
    assert finished.task.id == task.id
    assert finished.reads == fake.stats.reads[task.id]
    assert any(isinstance(e, events.RequestAnswered) and e.status == 200 for e in seen)
    assert any(f"task {task.id} submitted" in r.getMessage() for r in caplog.records)
    assert any(f"task {task.id} completed after" in r.getMessage() for r in caplog.records)
    assert fake.api_key not in caplog.text


async def test_two_clients_in_one_process_are_observed_each_by_its_own(fake: FakeEvolink) -> None:
    mine: list[Any] = []
    theirs: list[Any] = []
    everyone: list[Any] = []
    unsubscribe = events.subscribe(everyone.append)  # the process default: clients without observers of their own
    try:
        async with (
            evo.AsyncClient(fake.api_key, base_url=fake.base_url, poll=POLL, event_hooks=[mine.append]) as a,
            evo.AsyncClient(fake.api_key, base_url=fake.base_url, poll=POLL, event_hooks=[theirs.append]) as b,
            evo.AsyncClient(fake.api_key, base_url=fake.base_url, poll=POLL) as c,
        ):
            ta = await a.generate("a cat [duration:0.1]")
            tb = await b.generate("a dog [duration:0.1]")
            tc = await c.generate("a cow [duration:0.1]")
    finally:
        unsubscribe()

    def finished(seen: list[Any]) -> list[str]:
        return [e.task.id for e in seen if isinstance(e, events.TaskFinished)]

    assert (finished(mine), finished(theirs), finished(everyone)) == ([ta.id], [tb.id], [tc.id])
    assert c.observers is events.default_observers
    assert a.observers is not b.observers


async def test_instrumenting_one_clients_observers_traces_that_client_only(fake: FakeEvolink) -> None:
    t = Telemetry()
    async with (
        evo.AsyncClient(fake.api_key, base_url=fake.base_url, poll=POLL, observers=evo.events.Observers()) as traced,
        evo.AsyncClient(fake.api_key, base_url=fake.base_url, poll=POLL) as plain,
    ):
        handle = otel.instrument(t.tracer_provider, t.meter_provider, observers=traced.observers)
        try:
            task = await traced.generate("a cat [duration:0.1]")
            await plain.generate("a dog [duration:0.1]")
            [in_flight] = t.metric("evolink.tasks.in_flight")
        finally:
            handle.uninstrument()
    assert [s.attributes["gen_ai.response.id"] for s in t.finished() if s.name.startswith("generate_")] == [task.id]
    assert in_flight.value == 0
    assert traced.observers.trace_configs == []  # uninstrument() took its trace config back


def test_observers_and_event_hooks_together_are_refused() -> None:
    with pytest.raises(evo.ConfigurationError, match="not both"):
        evo.AsyncClient("k", observers=evo.events.Observers(), event_hooks=[print])
