"""OTLP export that can never get in a request's way, never ships a secret, and counts losses.

Spans and logs leave through batch processors (bounded queues, background threads): a
collector that refuses or black-holes connections costs those threads their time, never a
request. Losses are counted in ``telemetry_dropped_total{signal, reason}``: ``queue_full``
when a queue overflows, ``export_failed`` when the collector does not take a batch.

Both pipelines remove secrets from span attributes, event attributes and status messages on the
way out: the fast one while encoding (`otlp_wire`), the SDK one in `RedactingSpanExporter`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Final

from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Status

from mandate_vault_shared.telemetry import names
from mandate_vault_shared.telemetry.instruments import Metrics
from mandate_vault_shared.telemetry.otlp_wire import encode_spans
from mandate_vault_shared.telemetry.redact import redact_text, safe_attribute
from mandate_vault_shared.telemetry.seams import QUEUE_FULL_MESSAGE, OtlpSender, batch_queue_full


class DropCounter:
    """Counts telemetry the process had to throw away."""

    def __init__(self, metrics: Metrics) -> None:
        self._counter = metrics.counter(
            names.TELEMETRY_DROPPED_TOTAL,
            "Telemetry items dropped",
            (names.LABEL_SIGNAL, names.LABEL_REASON),
        )

    def add(self, signal: str, reason: str, amount: int = 1) -> None:
        self._counter.add((signal, reason), amount)


class QueueFullFilter(logging.Filter):
    """Turns the SDK's one-warning-per-dropped-item into a counter (and silences the spam)."""

    def __init__(self, drops: DropCounter) -> None:
        super().__init__()
        self._drops = drops

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == QUEUE_FULL_MESSAGE:
            signal = "traces" if record.args == ("Span",) else "logs"
            self._drops.add(signal, "queue_full")
            return False
        return True


class CountingBatchSpanProcessor(BatchSpanProcessor):
    """Drops a span at once, counted, when the queue is full (the exporter is stuck: collector
    down or black-holed). The SDK would log a warning per dropped span on the request's thread,
    stack walk included, which made a black-holed collector cost requests time."""

    def __init__(self, exporter: SpanExporter, drops: DropCounter, **options: Any) -> None:
        super().__init__(exporter, **options)
        self._drops = drops

    def on_end(self, span: ReadableSpan) -> None:
        context = span.context
        if context is not None and context.trace_flags.sampled and batch_queue_full(self):
            self._drops.add("traces", "queue_full")
            return
        super().on_end(span)


# Spans encoded between two chances for the request thread to take the GIL (~1 ms of work).
ENCODE_SLICE: Final = 64


class SafeSpanExporter(SpanExporter):
    """Fast pipeline: encodes spans with `otlp_wire` (redacting on the way, in slices of
    `ENCODE_SLICE` so a large batch does not stall the event loop) and posts them with the SDK
    exporter's HTTP client; counts failed batches."""

    def __init__(self, sender: OtlpSender, drops: DropCounter) -> None:
        self._sender = sender
        self._drops = drops

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        payload = encode_spans(spans, pause_every=ENCODE_SLICE)
        if self._sender.export(payload).success:
            return SpanExportResult.SUCCESS
        self._drops.add("traces", "export_failed", len(spans))
        return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        self._sender.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _clean(values: Mapping[str, Any] | None) -> tuple[dict[str, Any], bool]:
    clean = {key: safe_attribute(key, value) for key, value in (values or {}).items()}
    return clean, any(clean[key] != value for key, value in (values or {}).items())


def redacted(span: ReadableSpan) -> ReadableSpan:
    """The span with secrets removed (the same object when it holds none)."""
    attributes, changed = _clean(span.attributes)
    events = []
    for event in span.events:
        event_attributes, event_changed = _clean(event.attributes)
        changed |= event_changed
        events.append(Event(event.name, event_attributes, event.timestamp))
    status = span.status
    if status.description and redact_text(status.description) != status.description:
        status, changed = Status(status.status_code, redact_text(status.description)), True
    if not changed:
        return span
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=attributes,
        events=events,
        links=span.links,
        kind=span.kind,
        status=status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class RedactingSpanExporter(SpanExporter):
    """SDK pipeline: the SDK's OTLP exporter, fed spans without secrets; counts failures."""

    def __init__(self, inner: SpanExporter, drops: DropCounter) -> None:
        self._inner = inner
        self._drops = drops

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = self._inner.export([redacted(span) for span in spans])
        if result is not SpanExportResult.SUCCESS:
            self._drops.add("traces", "export_failed", len(spans))
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


class CountingLogExporter(LogRecordExporter):
    """SDK pipeline: the SDK's OTLP log exporter; counts failed batches (records arrive
    redacted: the structlog chain removed secrets before they were emitted)."""

    def __init__(self, inner: LogRecordExporter, drops: DropCounter) -> None:
        self._inner = inner
        self._drops = drops

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        result = self._inner.export(batch)
        if result is not LogRecordExportResult.SUCCESS:
            self._drops.add("logs", "export_failed", len(batch))
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()  # type: ignore[no-untyped-call]

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)
