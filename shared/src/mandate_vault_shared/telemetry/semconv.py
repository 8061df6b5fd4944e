"""Telemetry of outgoing calls: HTTP clients, database statements and Kafka messages.

Each object bundles the tracer its spans come from and the instruments it records:

- `HttpClientTelemetry`: ``http.client.request.duration``;
- `DbTelemetry`: the guide's ``db_query_duration_seconds{operation}``,
  ``db.client.operation.duration`` and, in the fast pipeline, a CLIENT span per statement
  inside a sampled trace (the SDK pipeline gets its spans from opentelemetry-instrumentation-
  asyncpg / -sqlalchemy instead);
- `MessagingTelemetry`: ``messaging.client.operation.duration`` and
  ``messaging.client.sent.messages`` when producing, ``messaging.process.duration`` and
  ``messaging.client.consumed.messages`` when processing.

The semantic-convention instruments exist only with ``TELEMETRY_SEMCONV_METRICS`` on (None
otherwise: recording then costs one test).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Final

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from mandate_vault_shared.telemetry import names
from mandate_vault_shared.telemetry.instruments import Counter, Histogram, Metrics

KAFKA: Final = "kafka"
_MAX_STATEMENT: Final = 2048


class HttpClientTelemetry:
    def __init__(
        self, tracer: Tracer, metrics: Metrics | None = None, *, semconv: bool = False
    ) -> None:
        self.tracer = tracer
        self._duration: Histogram | None = None
        self._labels: dict[tuple[str, str, int, int | None, str], tuple[str, ...]] = {}
        if semconv and metrics is not None:
            self._duration = metrics.histogram(
                names.SEMCONV_HTTP_CLIENT_DURATION,
                "Duration of HTTP client requests",
                (
                    names.ATTR_HTTP_METHOD,
                    names.ATTR_SERVER_ADDRESS,
                    names.ATTR_SERVER_PORT,
                    names.ATTR_HTTP_STATUS,
                    names.ATTR_ERROR_TYPE,
                ),
                bounds=names.SEMCONV_HTTP_BUCKETS,
            )

    def record(
        self, method: str, host: str, port: int, status: int | None, error: str, seconds: float
    ) -> None:
        if self._duration is None:
            return
        key = (method, host, port, status, error)
        labels = self._labels.get(key)
        if labels is None:
            status_text = "" if status is None else str(status)
            if not error and status is not None and status >= 500:
                error = status_text
            labels = self._labels[key] = (method, host, str(port), status_text, error)
        self._duration.record(labels, seconds)


class DbTelemetry:
    def __init__(
        self, tracer: Tracer | None, metrics: Metrics, system: str, *, semconv: bool
    ) -> None:
        self._tracer = tracer  # spans of our own (fast pipeline only)
        self._system = system
        self._guide = metrics.histogram(
            names.DB_QUERY_DURATION, "Database query latency", ("operation",)
        )
        self._semconv: Histogram | None = None
        if semconv:
            self._semconv = metrics.histogram(
                names.SEMCONV_DB_OPERATION_DURATION,
                "Duration of database client operations",
                (names.ATTR_DB_SYSTEM, names.ATTR_DB_OPERATION, names.ATTR_ERROR_TYPE),
                bounds=names.SEMCONV_DB_BUCKETS,
            )
        self._labels: dict[tuple[str, str], tuple[tuple[str], tuple[str, str, str]]] = {}

    def finished(self, operation: str, statement: str, seconds: float, error: str = "") -> None:
        """One statement; `operation` is select/insert/update/delete/other."""
        labels = self._labels.get((operation, error))
        if labels is None:
            labels = (operation,), (self._system, operation.upper(), error)
            self._labels[(operation, error)] = labels
        self._guide.record(labels[0], seconds)
        if self._semconv is not None:
            self._semconv.record(labels[1], seconds)
        # Only inside a sampled trace: no span object at all for the others.
        if (
            self._tracer is not None
            and trace.get_current_span().get_span_context().trace_flags.sampled
        ):
            self._span(operation.upper(), statement, seconds, error)

    def _span(self, name: str, statement: str, seconds: float, error: str) -> None:
        """A CLIENT span for the finished statement (the sampler follows the parent)."""
        end = time.time_ns()
        assert self._tracer is not None
        span = self._tracer.start_span(
            name,
            kind=SpanKind.CLIENT,
            start_time=end - int(seconds * 1e9),
            attributes={
                names.ATTR_DB_SYSTEM: self._system,
                names.ATTR_DB_OPERATION: name,
                names.ATTR_DB_QUERY: statement[:_MAX_STATEMENT],
            },
        )
        if span.is_recording() and error:
            span.set_attribute(names.ATTR_ERROR_TYPE, error)
            span.set_status(Status(StatusCode.ERROR))
        span.end(end)


@dataclass
class _Messaging:
    duration: Histogram
    count: Counter


class MessagingTelemetry:
    def __init__(
        self, tracer: Tracer, metrics: Metrics | None = None, *, semconv: bool = False
    ) -> None:
        self.tracer = tracer
        self._send: _Messaging | None = None
        self._process: _Messaging | None = None
        if not semconv or metrics is None:
            return
        keys = (
            names.ATTR_MESSAGING_SYSTEM,
            names.ATTR_MESSAGING_OPERATION,
            names.ATTR_MESSAGING_DESTINATION,
            names.ATTR_ERROR_TYPE,
        )
        self._send = _Messaging(
            metrics.histogram(
                names.SEMCONV_MESSAGING_OPERATION_DURATION,
                "Duration of messaging operations",
                keys,
                bounds=names.SEMCONV_HTTP_BUCKETS,
            ),
            metrics.counter(names.SEMCONV_MESSAGING_SENT, "Messages producers sent", keys),
        )
        self._process = _Messaging(
            metrics.histogram(
                names.SEMCONV_MESSAGING_PROCESS_DURATION,
                "Duration of processing operations",
                keys,
                bounds=names.SEMCONV_HTTP_BUCKETS,
            ),
            metrics.counter(names.SEMCONV_MESSAGING_CONSUMED, "Messages consumers received", keys),
        )

    def sent(self, topic: str, seconds: float, error: str = "") -> None:
        if self._send is not None:
            labels = (KAFKA, "send", topic, error)
            self._send.duration.record(labels, seconds)
            self._send.count.add(labels)

    def processed(self, topic: str, seconds: float, error: str = "") -> None:
        if self._process is not None:
            labels = (KAFKA, "process", topic, error)
            self._process.duration.record(labels, seconds)
            self._process.count.add(labels)
