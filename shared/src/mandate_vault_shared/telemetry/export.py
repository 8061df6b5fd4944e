"""OTLP export that can never get in a request's way, and counts what it loses.

Everything leaves through the SDK's batch processors (bounded queues, a background thread):
a collector that refuses or black-holes connections costs the export thread its time, never a
request. Losses are counted in ``telemetry_dropped_total{signal, reason}``: ``queue_full`` when a
batch queue overflows, ``export_failed`` when the collector does not take a batch.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry._logs import Logger as OtelLogger
from opentelemetry._logs import SeverityNumber
from opentelemetry.metrics import Counter
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from structlog.typing import EventDict, WrappedLogger

from mandate_vault_shared.telemetry.names import LABEL_REASON, LABEL_SIGNAL
from mandate_vault_shared.telemetry.redact import redact

_SIGNALS: Final = ("traces", "metrics", "logs")
_SEVERITY: Final = {
    "debug": SeverityNumber.DEBUG,
    "info": SeverityNumber.INFO,
    "warning": SeverityNumber.WARN,
    "error": SeverityNumber.ERROR,
    "critical": SeverityNumber.FATAL,
}
_ENVELOPE_KEYS: Final = frozenset({"event", "level", "timestamp"})


def otlp_configured(signal: str, environ: Mapping[str, str] | None = None) -> bool:
    """True when the standard variables name an endpoint for `signal` (traces/metrics/logs)."""
    env = os.environ if environ is None else environ
    if env.get(f"OTEL_{signal.upper()}_EXPORTER", "otlp").lower() == "none":
        return False
    return bool(
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or env.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT")
    )


def check_protocol(environ: Mapping[str, str] | None = None) -> None:
    """Only OTLP over HTTP/protobuf is shipped; say so at start instead of failing later."""
    env = os.environ if environ is None else environ
    for key in (
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        *(f"OTEL_EXPORTER_OTLP_{s.upper()}_PROTOCOL" for s in _SIGNALS),
    ):
        value = env.get(key)
        if value and value != "http/protobuf":
            msg = f"{key}={value} is not supported: use http/protobuf (collector port 4318)"
            raise ValueError(msg)


class DropCounter:
    """Counts telemetry the process had to throw away."""

    def __init__(self, counter: Counter) -> None:
        self._counter = counter
        self._attributes: dict[tuple[str, str], dict[str, str]] = {}

    def add(self, signal: str, reason: str, amount: int = 1) -> None:
        key = (signal, reason)
        attributes = self._attributes.get(key)
        if attributes is None:
            attributes = self._attributes[key] = {LABEL_SIGNAL: signal, LABEL_REASON: reason}
        self._counter.add(amount, attributes)


class QueueFullFilter(logging.Filter):
    """Turns the SDK's one-warning-per-dropped-item into a counter (and silences the spam)."""

    def __init__(self, drops: DropCounter) -> None:
        super().__init__()
        self._drops = drops

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == "Queue full, dropping %s.":
            signal = "traces" if record.args == ("Span",) else "logs"
            self._drops.add(signal, "queue_full")
            return False
        return True


def _clean_attributes(attributes: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    if not attributes:
        return attributes
    cleaned = redact(dict(attributes))
    return attributes if cleaned == attributes else cleaned


def redact_span(span: ReadableSpan) -> ReadableSpan:
    """The span itself when it holds no secret, else a copy with secrets replaced."""
    attributes = _clean_attributes(span.attributes)
    events = [
        Event(event.name, _clean_attributes(event.attributes), event.timestamp)
        if _clean_attributes(event.attributes) is not event.attributes
        else event
        for event in span.events
    ]
    unchanged = attributes is span.attributes and all(
        new is old for new, old in zip(events, span.events, strict=True)
    )
    if unchanged:
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
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class SafeSpanExporter(SpanExporter):
    """Redacts secrets from spans (in the export thread) and counts failed batches."""

    def __init__(self, inner: SpanExporter, drops: DropCounter) -> None:
        self._inner = inner
        self._drops = drops

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = self._inner.export([redact_span(span) for span in spans])
        if result is not SpanExportResult.SUCCESS:
            self._drops.add("traces", "export_failed", len(spans))
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


class CountingLogExporter(LogRecordExporter):
    """Counts failed log batches (records are redacted before they reach the SDK)."""

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


def _attribute_value(value: Any) -> str | int | float | bool:
    if isinstance(value, str | bool | int | float):
        return value
    return str(value)


class OtlpLogBridge:
    """A structlog processor that also hands each (already redacted) event to the OTel SDK."""

    def __init__(self, logger: OtelLogger) -> None:
        self._logger = logger

    def __call__(self, _: WrappedLogger, __: str, event: EventDict) -> EventDict:
        level = event.get("level", "info")
        attributes = {
            key: _attribute_value(value)
            for key, value in event.items()
            if key not in _ENVELOPE_KEYS and value is not None
        }
        self._logger.emit(
            timestamp=time.time_ns(),
            context=otel_context.get_current(),
            severity_number=_SEVERITY.get(level, SeverityNumber.INFO),
            severity_text=level.upper(),
            body=str(event.get("event", "")),
            attributes=attributes,
            event_name=str(event.get("event", "")),
        )
        return event
