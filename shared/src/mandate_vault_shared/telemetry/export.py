"""OTLP export that can never get in a request's way, and counts what it loses.

Spans leave through the SDK's batch processor and logs through `log_shipper` (bounded queues,
background threads): a collector that refuses or black-holes connections costs those threads
their time, never a request. Losses are counted in ``telemetry_dropped_total{signal,
reason}``: ``queue_full`` when a queue overflows, ``export_failed`` when the collector does not
take a batch.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any, Final, Protocol

from opentelemetry.metrics import Counter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from mandate_vault_shared.telemetry.names import LABEL_REASON, LABEL_SIGNAL
from mandate_vault_shared.telemetry.otlp_wire import encode_spans

_SIGNALS: Final = ("traces", "metrics", "logs")


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


class OtlpSender(Protocol):
    """What the SDK's OTLP/HTTP exporters use to POST a payload (with retries and timeout)."""

    def export(self, data: bytes) -> Any: ...

    def shutdown(self) -> None: ...


def sender_of(exporter: Any) -> OtlpSender:
    """The HTTP client inside an SDK OTLP/HTTP exporter, configured from OTEL_* variables.

    Reusing it keeps the SDK's endpoint, header, timeout, compression and retry handling; only
    the encoding is ours (see `otlp_wire`). tests/shared/test_otlp_wire.py fails if the SDK
    moves it.
    """
    client: OtlpSender = exporter._client
    return client


class SafeSpanExporter(SpanExporter):
    """Encodes spans with `otlp_wire` (which removes secrets from attributes, event attributes
    and status messages on the way) and counts failed batches."""

    def __init__(self, sender: OtlpSender, drops: DropCounter) -> None:
        self._sender = sender
        self._drops = drops

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        payload = encode_spans(spans)
        if self._sender.export(payload).success:
            return SpanExportResult.SUCCESS
        self._drops.add("traces", "export_failed", len(spans))
        return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        self._sender.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
