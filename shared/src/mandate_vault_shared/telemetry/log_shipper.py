"""Log records over OTLP without the SDK's per-record objects.

The structlog chain hands each (already redacted) event to `LogShipper`, which keeps a plain
copy of it (with the time and the current span's context) in a bounded deque; a background thread
turns the copies into `WireLog`s, encodes batches with `otlp_wire` and posts them with the SDK
exporter's HTTP client. On the hot path that is a dict copy, a tuple and an append (the SDK's
LoggerProvider cost ~40 us per record there, plus ~40 us to encode). A full queue drops
the oldest record and counts it; a collector that is down costs the thread, not the request.
Queue size, batch size and delay come from the standard ``OTEL_BLRP_*`` variables, as for the
SDK's BatchLogRecordProcessor.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Final

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext
from structlog.typing import EventDict, WrappedLogger

from mandate_vault_shared.telemetry.export import DropCounter
from mandate_vault_shared.telemetry.logs import SEVERITY, record_attributes
from mandate_vault_shared.telemetry.otlp_wire import WireLog, encode_log_records, logs_request
from mandate_vault_shared.telemetry.seams import OtlpSender
from mandate_vault_shared.telemetry.standard import blrp

# Records converted and encoded between two yields of the GIL: a full batch (512 by default)
# in one go held it for milliseconds, and requests waited (p99 of the all-on bench up ~40 %).
_SLICE: Final = 64

# What the request path queues: when, in which span, and the event's fields (a shallow copy: the
# chain's later processors may still change the original).
_Queued = tuple[int, SpanContext, EventDict]


def _wire_log(queued: _Queued) -> WireLog:
    time_unix_nano, span, event = queued
    level = event.get("level", "info")
    return WireLog(
        time_unix_nano,
        SEVERITY.get(level, 9),
        level.upper(),
        str(event.get("event", "")),
        record_attributes(event),
        span.trace_id if span.is_valid else 0,
        span.span_id if span.is_valid else 0,
        int(span.trace_flags) if span.is_valid else 0,
    )


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
        self._queue: collections.deque[_Queued] = collections.deque()
        limits = blrp()
        self._max_queue = limits["OTEL_BLRP_MAX_QUEUE_SIZE"]
        self._batch_size = min(limits["OTEL_BLRP_MAX_EXPORT_BATCH_SIZE"], self._max_queue)
        self._interval = limits["OTEL_BLRP_SCHEDULE_DELAY"] / 1000
        self._wake = threading.Event()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="OtlpLogShipper", daemon=True)
        self._thread.start()

    def __call__(self, _: WrappedLogger, __: str, event: EventDict) -> EventDict:
        """The structlog processor: queue the event, never block (the export thread converts it)."""
        queue = self._queue
        if len(queue) >= self._max_queue:
            queue.popleft()
            self._drops.add("logs", "queue_full")
        queue.append((time.time_ns(), trace.get_current_span().get_span_context(), dict(event)))
        if len(queue) >= self._batch_size and not self._wake.is_set():
            self._wake.set()
        return event

    def _run(self) -> None:
        """The SDK's batching: woken by a full batch, send full batches; at the end of the delay,
        at least one, full or not; on shutdown, everything. (Sending all that is queued each
        time woken made, under load, a stream of small batches that cost a POST each.)"""
        while not self._stopped:
            woken_by_a_full_batch = self._wake.wait(self._interval)
            self._wake.clear()
            self._drain(partial_batches=0 if woken_by_a_full_batch else 1)
        self._drain(partial_batches=-1)

    def _drain(self, partial_batches: int) -> None:
        """Sends full batches while there are; then up to `partial_batches` others (-1: all)."""
        while self._queue:
            if len(self._queue) < self._batch_size:
                if partial_batches == 0:
                    return
                partial_batches -= 1
            self._send_batch()

    def _send_batch(self) -> None:
        taken = min(self._batch_size, len(self._queue))
        queued = [self._queue.popleft() for _ in range(taken)]
        slices = []
        for start in range(0, taken, _SLICE):
            if start:
                time.sleep(0)  # lets the event loop's thread take the GIL between slices
            slices.append(
                encode_log_records([_wire_log(q) for q in queued[start : start + _SLICE]])
            )
        payload = logs_request(b"".join(slices), self._resource, self._scope)
        if not self._sender.export(payload).success:
            self._drops.add("logs", "export_failed", taken)

    def shutdown(self, timeout_seconds: float = 5.0) -> None:
        self._stopped = True
        self._wake.set()
        self._thread.join(timeout_seconds)
        self._sender.shutdown()
