"""The private parts of the OpenTelemetry SDK the telemetry code uses (telemetry/seams.py), checked
against the installed SDK. A failure here names the seam a new release moved: fix seams.py (or
keep the pin in shared/pyproject.toml) before widening the `opentelemetry-*` ranges."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator, Sequence

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric

from mandate_vault_shared.telemetry import seams


@pytest.mark.parametrize(
    "exporter",
    [
        OTLPSpanExporter(endpoint="http://127.0.0.1:1/v1/traces"),
        OTLPLogExporter(endpoint="http://127.0.0.1:1/v1/logs"),
    ],
    ids=["spans", "logs"],
)
def test_the_otlp_http_exporters_keep_their_http_client(exporter: object) -> None:
    sender = seams.sender_of(exporter)
    assert callable(sender.export), "OTLP/HTTP exporter `_client` moved: see seams.sender_of"
    assert callable(sender.shutdown)


def test_finished_spans_keep_their_attributes_in_a_plain_dict() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("seams").start_as_current_span("s", attributes={"a": 1, "b": "x"}):
        pass
    (span,) = exporter.get_finished_spans()
    raw = seams.span_attributes(span)
    assert raw is not None, "ReadableSpan._attributes moved: see seams.span_attributes"
    assert type(seams.plain(raw)) is dict, "BoundedAttributes._dict moved: see seams.plain"
    assert dict(seams.plain(raw)) == {"a": 1, "b": "x"}


def test_finished_spans_keep_their_events_and_links_in_sized_sequences() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    linked = trace.SpanContext(1, 2, is_remote=True)
    tracer = provider.get_tracer("seams")
    with tracer.start_as_current_span("s", links=[trace.Link(linked)]) as span:
        span.add_event("e")
    (finished,) = exporter.get_finished_spans()
    events, links = seams.span_events_and_links(finished)
    assert len(events) == 1, "ReadableSpan._events moved: see seams.span_events_and_links"
    assert len(links) == 1, "ReadableSpan._links moved: see seams.span_events_and_links"
    assert [e.name for e in events] == ["e"]
    assert [link.context for link in links] == [linked]


def test_plain_attributes_land_as_the_sdk_would_set_them() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    span = provider.get_tracer("seams").start_span("s", attributes={"a": 1, "b": "x"})
    seams.set_plain_attributes(span, {"c": "y", "a": 2})
    span.end()
    seams.set_plain_attributes(span, {"late": "ignored"})
    (finished,) = exporter.get_finished_spans()
    raw = seams.span_attributes(finished)
    assert raw is not None
    assert type(seams.plain(raw)) is dict, "BoundedAttributes._dict moved: see seams.plain"
    assert list((finished.attributes or {}).items()) == [("b", "x"), ("c", "y"), ("a", 2)]


def test_plain_attributes_honour_the_sdk_limits() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(span_limits=SpanLimits(max_span_attributes=2, max_attribute_length=3))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    span = provider.get_tracer("seams").start_span("s")
    seams.set_plain_attributes(span, {"a": "abcdef", "b": 1, "c": 2})
    span.end()
    (finished,) = exporter.get_finished_spans()
    assert dict(finished.attributes or {}) == {"b": 1, "c": 2}
    assert finished.dropped_attributes == 1
    seams.set_plain_attributes(trace.INVALID_SPAN, {"a": "x"})  # not an SDK span: no error


def test_metric_exporters_keep_their_preferences() -> None:
    exporter = OTLPMetricExporter(endpoint="http://127.0.0.1:1/v1/metrics")
    temporality, aggregation = seams.preferences(exporter)
    assert isinstance(temporality, dict), "MetricExporter._preferred_temporality moved"
    assert isinstance(aggregation, dict), "MetricExporter._preferred_aggregation moved"


def test_the_prometheus_reader_collector_can_be_wrapped() -> None:
    registry = CollectorRegistry()
    reader = PrometheusMetricReader(registry=registry, scope_info_enabled=False)
    seen: list[str] = []

    def post(families: Iterable[Metric]) -> Iterator[Metric]:
        for family in families:
            seen.append(family.name)
            yield family

    seams.wrap_prometheus_collector(reader, registry, post)
    provider = MeterProvider(metric_readers=[reader])
    provider.get_meter("seams").create_counter("seams_total").add(1)
    text = generate_latest(registry).decode()
    assert "seams_total 1.0" in text
    assert "seams" in seen, "PrometheusMetricReader._collector moved: see seams"
    provider.shutdown()


class _Stuck(SpanExporter):
    def __init__(self) -> None:
        self.release = threading.Event()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.release.wait(5)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.release.set()


def test_a_full_batch_queue_logs_the_warning_the_drop_counter_reads() -> None:
    records: list[logging.LogRecord] = []

    class Count(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            records.append(record)
            return True

    stop = seams.count_before_the_sdk_filters(Count())
    exporter = _Stuck()
    provider = TracerProvider()
    provider.add_span_processor(
        BatchSpanProcessor(
            exporter, max_queue_size=1, max_export_batch_size=1, schedule_delay_millis=1
        )
    )
    try:
        for _ in range(20):
            with provider.get_tracer("seams").start_as_current_span("s"):
                pass
    finally:
        exporter.release.set()
        provider.shutdown()
        stop()
    messages = {(r.msg, r.args) for r in records}
    drops = sum(1 for r in records if r.msg == seams.QUEUE_FULL_MESSAGE)
    assert drops >= 15, f"only {drops} of about 18 drops reached the filter (DuplicateFilter?)"
    assert (seams.QUEUE_FULL_MESSAGE, ("Span",)) in messages, (
        f"the SDK no longer logs {seams.QUEUE_FULL_MESSAGE!r} on {seams.QUEUE_FULL_LOGGER}: "
        f"telemetry_dropped_total{{reason='queue_full'}} would stay 0; saw {messages}"
    )


def test_a_batch_processor_says_when_its_queue_is_full() -> None:
    exporter = _Stuck()
    processor = BatchSpanProcessor(
        exporter, max_queue_size=2, max_export_batch_size=1, schedule_delay_millis=1
    )
    provider = TracerProvider()
    provider.add_span_processor(processor)
    try:
        assert not seams.batch_queue_full(processor)
        for _ in range(6):  # one in the stuck export, then the queue fills
            with provider.get_tracer("seams").start_as_current_span("s"):
                pass
        assert seams.batch_queue_full(processor)
    finally:
        exporter.release.set()
        provider.shutdown()
