"""Log records over OTLP without the SDK's per-record objects.

The structlog chain hands each (already redacted) event to `LogShipper`, which keeps a plain
`WireLog` in a bounded deque; a background thread encodes batches with `otlp_wire` and posts
them with the SDK exporter's HTTP client. On the hot path that is a tuple and an append (the
SDK's LoggerProvider cost ~40 us per record there, plus ~40 us to encode). A full queue drops
the oldest record and counts it; a collector that is down costs the thread, not the request.
Queue size, batch size and delay come from the standard ``OTEL_BLRP_*`` variables, as for the
SDK's BatchLogRecordProcessor.
"""

from __future__ import annotations

import collections
import threading
import time

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from structlog.typing import EventDict, WrappedLogger

from mandate_vault_shared.telemetry.export import DropCounter
from mandate_vault_shared.telemetry.logs import SEVERITY, record_attributes
from mandate_vault_shared.telemetry.otlp_wire import WireLog, encode_logs
from mandate_vault_shared.telemetry.seams import OtlpSender
from mandate_vault_shared.telemetry.standard import blrp


class LogShipper:
    def __init__(
        self,
        sender: OtlpSender,
        drops: DropCounter,
        resource: Resource,
        scope: InstrumentationScope,
    ) -> None:
        self._sender = sender
        self._drops = drops
        self._resource = resource
        self._scope = scope
        self._queue: collections.deque[WireLog] = collections.deque()
        limits = blrp()
        self._max_queue = limits["OTEL_BLRP_MAX_QUEUE_SIZE"]
        self._batch_size = min(limits["OTEL_BLRP_MAX_EXPORT_BATCH_SIZE"], self._max_queue)
        self._interval = limits["OTEL_BLRP_SCHEDULE_DELAY"] / 1000
        self._wake = threading.Event()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="OtlpLogShipper", daemon=True)
        self._thread.start()

    def __call__(self, _: WrappedLogger, __: str, event: EventDict) -> EventDict:
        """The structlog processor: queue the event, never block."""
        span = trace.get_current_span().get_span_context()
        level = event.get("level", "info")
        record = WireLog(
            time.time_ns(),
            SEVERITY.get(level, 9),
            level.upper(),
            str(event.get("event", "")),
            record_attributes(event),
            span.trace_id if span.is_valid else 0,
            span.span_id if span.is_valid else 0,
            int(span.trace_flags) if span.is_valid else 0,
        )
        if len(self._queue) >= self._max_queue:
            self._queue.popleft()
            self._drops.add("logs", "queue_full")
        self._queue.append(record)
        if len(self._queue) >= self._batch_size:
            self._wake.set()
        return event

    def _run(self) -> None:
        while not self._stopped:
            self._wake.wait(self._interval)
            self._wake.clear()
            self._drain()
        self._drain()

    def _drain(self) -> None:
        while self._queue:
            batch = [self._queue.popleft() for _ in range(min(self._batch_size, len(self._queue)))]
            payload = encode_logs(batch, self._resource, self._scope)
            if not self._sender.export(payload).success:
                self._drops.add("logs", "export_failed", len(batch))

    def shutdown(self, timeout_seconds: float = 5.0) -> None:
        self._stopped = True
        self._wake.set()
        self._thread.join(timeout_seconds)
        self._sender.shutdown()
