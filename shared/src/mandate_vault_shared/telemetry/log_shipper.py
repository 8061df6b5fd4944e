"""Log records over OTLP without the SDK's per-record objects.

The structlog chain hands each (already redacted) event to `LogShipper`, which keeps a plain
`WireLog` in a bounded deque; a background thread encodes batches with `otlp_wire` and posts
them with the SDK exporter's HTTP client. On the hot path that is a tuple and an append (the
SDK's LoggerProvider cost ~40 us per record there, plus ~40 us to encode). A full queue drops
the oldest record and counts it; a collector that is down costs the thread, not the request.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Final

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from structlog.typing import EventDict, WrappedLogger

from mandate_vault_shared.telemetry.export import DropCounter, OtlpSender
from mandate_vault_shared.telemetry.otlp_wire import WireLog, encode_logs

_SEVERITY: Final = {"debug": 5, "info": 9, "warning": 13, "error": 17, "critical": 21}
# Carried by the record itself (body, severity, time, trace fields) or by the resource.
_ENVELOPE_KEYS: Final = frozenset({"event", "level", "timestamp", "trace_id", "span_id", "service"})
_PRIMITIVES: Final = (str, bool, int, float)


class LogShipper:
    def __init__(
        self,
        sender: OtlpSender,
        drops: DropCounter,
        resource: Resource,
        scope: InstrumentationScope,
        *,
        max_queue: int = 2048,
        batch_size: int = 512,
        interval_seconds: float = 1.0,
    ) -> None:
        self._sender = sender
        self._drops = drops
        self._resource = resource
        self._scope = scope
        self._queue: collections.deque[WireLog] = collections.deque()
        self._max_queue = max_queue
        self._batch_size = batch_size
        self._interval = interval_seconds
        self._wake = threading.Event()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="OtlpLogShipper", daemon=True)
        self._thread.start()

    def __call__(self, _: WrappedLogger, __: str, event: EventDict) -> EventDict:
        """The structlog processor: queue the event, never block."""
        span = trace.get_current_span().get_span_context()
        level = event.get("level", "info")
        attributes = {
            key: value if isinstance(value, _PRIMITIVES) else str(value)
            for key, value in event.items()
            if key not in _ENVELOPE_KEYS and value is not None
        }
        record = WireLog(
            time.time_ns(),
            _SEVERITY.get(level, 9),
            level.upper(),
            str(event.get("event", "")),
            attributes,
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
