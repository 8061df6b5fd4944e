"""The standard OpenTelemetry variables, honoured as the specification says.

Most are read by the SDK classes themselves, which we construct without arguments that would
override them: ``OTEL_EXPORTER_OTLP_*`` and the per-signal variants (endpoint, headers,
timeout, compression, certificates) by the exporters, ``OTEL_BSP_*`` / ``OTEL_BLRP_*`` by the
batch processors (the fast log shipper reads ``OTEL_BLRP_*`` here; two span defaults differ
from the SDK's: `span_batching`), ``OTEL_METRIC_EXPORT_*``
by the periodic reader, ``OTEL_PROPAGATORS`` by the API at import, ``OTEL_METRICS_EXEMPLAR_FILTER``
by the meter provider. This module decides the rest: whether the SDK runs at all
(``OTEL_SDK_DISABLED``), whether a signal is exported (an endpoint is set and
``OTEL_<SIGNAL>_EXPORTER`` is not ``none``), over which protocol, with which sampler, and the
resource, where ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES`` win over the code's values.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypedDict

from opentelemetry.context import Context
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import SpanKind, get_current_span
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

GRPC: Final = "grpc"
HTTP_PROTOBUF: Final = "http/protobuf"
SIGNALS: Final = ("traces", "metrics", "logs")
SAMPLERS: Final[dict[str, Callable[[float], Sampler]]] = {
    "always_on": lambda _: ALWAYS_ON,
    "always_off": lambda _: ALWAYS_OFF,
    "traceidratio": TraceIdRatioBased,
    "parentbased_always_on": lambda _: ParentBased(ALWAYS_ON),
    "parentbased_always_off": lambda _: ParentBased(ALWAYS_OFF),
    "parentbased_traceidratio": lambda ratio: ParentBased(TraceIdRatioBased(ratio)),
}
EXEMPLAR_FILTERS: Final = ("trace_based", "always_on", "always_off")
# BatchLogRecordProcessor's defaults, for the fast log shipper (same variables, same meaning).
_BLRP_DEFAULTS: Final = {
    "OTEL_BLRP_SCHEDULE_DELAY": 1000,
    "OTEL_BLRP_MAX_QUEUE_SIZE": 2048,
    "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE": 512,
}


def _env(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def sdk_disabled(environ: Mapping[str, str] | None = None) -> bool:
    return _env(environ).get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def otlp_configured(signal: str, environ: Mapping[str, str] | None = None) -> bool:
    """True when `signal` (traces/metrics/logs) is to be exported: an endpoint names where."""
    env = _env(environ)
    if sdk_disabled(env) or env.get(f"OTEL_{signal.upper()}_EXPORTER", "otlp").lower() == "none":
        return False
    return bool(
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or env.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT")
    )


def protocol(signal: str, environ: Mapping[str, str] | None = None) -> str:
    """``grpc`` or ``http/protobuf`` (the default); settings refuse anything else at load."""
    env = _env(environ)
    chosen = env.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL") or env.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL"
    )
    return GRPC if chosen == GRPC else HTTP_PROTOBUF


def exemplar_filter(environ: Mapping[str, str] | None = None) -> str:
    value = _env(environ).get("OTEL_METRICS_EXEMPLAR_FILTER", "").strip().lower()
    return value if value in EXEMPLAR_FILTERS else "trace_based"


def blrp(environ: Mapping[str, str] | None = None) -> dict[str, int]:
    """``OTEL_BLRP_*`` with the SDK's defaults, keyed by variable name."""
    env = _env(environ)
    found = {}
    for name, default in _BLRP_DEFAULTS.items():
        try:
            found[name] = max(1, int(env.get(name, default)))
        except ValueError:
            found[name] = default
    return found


def resource(service: str, version: str, environment: str) -> Resource:
    """The process's resource: the code's values, then the standard variables on top."""
    ours = Resource.create(
        {
            "service.name": service,
            "service.version": version,
            "deployment.environment": environment,
            "deployment.environment.name": environment,
        }
    )
    return ours.merge(OTELResourceDetector().detect())


@dataclass(frozen=True)
class SamplerChoice:
    name: str  # one of SAMPLERS
    ratio: float


def sampler(choice: SamplerChoice) -> Sampler:
    return NoOrphanQueries(SAMPLERS[choice.name](choice.ratio))


class NoOrphanQueries(Sampler):
    """Database statements are traced inside a traced operation, never as traces of their own
    (a relay polling the outbox four times a second would otherwise fill the trace store)."""

    def __init__(self, inner: Sampler) -> None:
        self._inner = inner

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Any = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        if attributes and ("db.system" in attributes or "db.system.name" in attributes):
            parent = get_current_span(parent_context).get_span_context()
            if not parent.is_valid:
                return SamplingResult(Decision.DROP)
        return self._inner.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"NoOrphanQueries{{{self._inner.get_description()}}}"


# Batches of up to 512 spans (the SDK's size), sent at least every second (the SDK waits 5 s).
# Every export also costs the request thread (GIL hand-overs, the HTTP round trip): against
# batches of 64 every 200 ms, 512 cost ~3 % less api CPU a request at 10 % traces (side-by-side
# rounds, 2026-12-07). The fast pipeline encodes a batch in slices (`export.ENCODE_SLICE`), so
# a large one does not stall the event loop (unsliced, 512 had doubled the refusal p99 under
# overload; the SDK pipeline, the reference, still encodes whole batches). Either variable,
# when set, wins.
SPAN_BATCH_DEFAULTS: Final = {
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": 512,
    "OTEL_BSP_SCHEDULE_DELAY": 1000,
}


class SpanBatching(TypedDict):
    max_export_batch_size: int | None  # None: the SDK reads the variable
    schedule_delay_millis: float | None


def span_batching() -> SpanBatching:
    """Keyword arguments for `BatchSpanProcessor`: our defaults where the variable is unset."""
    batch, delay = None, None
    if "OTEL_BSP_MAX_EXPORT_BATCH_SIZE" not in os.environ:
        queue = os.environ.get("OTEL_BSP_MAX_QUEUE_SIZE", "")
        largest = int(queue) if queue.isdigit() and int(queue) > 0 else 2048
        batch = min(SPAN_BATCH_DEFAULTS["OTEL_BSP_MAX_EXPORT_BATCH_SIZE"], largest)
    if "OTEL_BSP_SCHEDULE_DELAY" not in os.environ:
        delay = SPAN_BATCH_DEFAULTS["OTEL_BSP_SCHEDULE_DELAY"]
    return SpanBatching(max_export_batch_size=batch, schedule_delay_millis=delay)
