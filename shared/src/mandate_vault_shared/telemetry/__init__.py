"""Telemetry for a Mandate Vault process: call `configure_telemetry` once, at start.

It sets up, from the service's settings and the standard ``OTEL_EXPORTER_OTLP_*`` variables:

- traces: a resource (``service.name``, ``service.version``, ``deployment.environment``), a
  parent-based ratio sampler, W3C tracecontext + baggage, batched OTLP export when configured;
- metrics: a Prometheus registry served at ``/api/v1/metrics`` and, when configured, periodic
  OTLP export of the same instruments;
- logs: structured lines on stdout (see `logs`) and, when configured, OTLP log records;
- Sentry, when ``SENTRY_DSN`` is set.

The OpenTelemetry SDK keeps its providers in process globals that can be set only once, so the
first call wins and later calls return the same `Telemetry` (tests rely on this).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from opentelemetry import metrics as otel_metrics
from opentelemetry import trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import Meter
from opentelemetry.propagate import set_global_textmap
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from prometheus_client import CollectorRegistry, generate_latest
from structlog.typing import Processor

from mandate_vault_shared.settings import ServiceSettings
from mandate_vault_shared.telemetry import names
from mandate_vault_shared.telemetry.export import (
    DropCounter,
    QueueFullFilter,
    SafeSpanExporter,
    check_protocol,
    otlp_configured,
    sender_of,
)
from mandate_vault_shared.telemetry.fast_metrics import FastMetrics, MergingMetricExporter
from mandate_vault_shared.telemetry.log_shipper import LogShipper
from mandate_vault_shared.telemetry.logs import LogConfig, configure_logging, get_logger
from mandate_vault_shared.telemetry.metrics import HttpMetrics
from mandate_vault_shared.telemetry.sentry import flush_sentry, init_sentry

__all__ = ["Telemetry", "configure_telemetry", "get_logger"]

INSTRUMENTATION_SCOPE: Final = "mandate_vault"
_SHUTDOWN_TIMEOUT_SECONDS: Final = 5.0

log = get_logger(__name__)


@dataclass(frozen=True)
class TelemetryOptions:
    """Test seams: extra span processors and metric readers next to the configured ones."""

    span_processors: Sequence[SpanProcessor] = ()
    metric_readers: Sequence[MetricReader] = ()
    log_exporters: Sequence[Processor] = ()


@dataclass
class Telemetry:
    service: str
    version: str
    environment: str
    enabled: bool
    http_middleware: str
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    registry: CollectorRegistry
    drops: DropCounter
    http: HttpMetrics
    fast: FastMetrics
    log_shipper: LogShipper | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _shut_down: bool = field(default=False, repr=False)

    @property
    def meter(self) -> Meter:
        return self.meter_provider.get_meter(INSTRUMENTATION_SCOPE, self.version)

    @property
    def tracer(self) -> Tracer:
        return self.tracer_provider.get_tracer(INSTRUMENTATION_SCOPE, self.version)

    def prometheus_text(self) -> bytes:
        return generate_latest(self.registry)

    def shutdown(self) -> None:
        """Flush and stop exporters, bounded in time even when the collector black-holes."""
        with self._lock:
            if self._shut_down:
                return
            self._shut_down = True
        worker = threading.Thread(target=self._shutdown_providers, daemon=True)
        worker.start()
        worker.join(_SHUTDOWN_TIMEOUT_SECONDS)
        flush_sentry()

    def _shutdown_providers(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown(timeout_millis=_SHUTDOWN_TIMEOUT_SECONDS * 1000)
        if self.log_shipper is not None:
            self.log_shipper.shutdown()


_process_telemetry: Telemetry | None = None
_configure_lock = threading.Lock()


def configure_telemetry(
    service: str,
    version: str,
    settings: ServiceSettings,
    options: TelemetryOptions | None = None,
) -> Telemetry:
    """Set up traces, metrics, logs and Sentry for this process (first call wins)."""
    global _process_telemetry  # noqa: PLW0603 - the SDK's providers are process-wide
    with _configure_lock:
        if _process_telemetry is None:
            _process_telemetry = _build(service, version, settings, options or TelemetryOptions())
        return _process_telemetry


def _build(
    service: str, version: str, settings: ServiceSettings, options: TelemetryOptions
) -> Telemetry:
    check_protocol()
    environment = settings.environment.value
    resource = Resource.create(
        {
            "service.name": service,
            "service.version": version,
            "deployment.environment": environment,
            "deployment.environment.name": environment,
        }
    )
    registry = CollectorRegistry(auto_describe=True)
    fast = FastMetrics()
    registry.register(fast)
    meter_provider = _meter_provider(resource, registry, fast, version, options)
    meter = meter_provider.get_meter(INSTRUMENTATION_SCOPE, version)
    drops = DropCounter(
        meter.create_counter(names.TELEMETRY_DROPPED_TOTAL, description="Telemetry items dropped")
    )
    logging.getLogger("opentelemetry.sdk._shared_internal").addFilter(QueueFullFilter(drops))
    tracer_provider = _tracer_provider(resource, settings, drops, options)
    log_shipper = _log_shipper(resource, drops, version)
    _configure_logs(service, settings, log_shipper, options)
    set_global_textmap(
        CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])
    )
    trace.set_tracer_provider(tracer_provider)
    otel_metrics.set_meter_provider(meter_provider)
    app_info = meter.create_gauge(names.APP_INFO, description="Application version and environment")
    app_info.set(1, {"version": version, "environment": environment, "service": service})
    if settings.sentry_dsn is not None:
        init_sentry(
            dsn=settings.sentry_dsn.get_secret_value(),
            environment=environment,
            release=f"{service}@{version}",
            traces_sample_rate=settings.sentry_traces_sample_rate or 0.0,
            server_name=service,
        )
    log.info(
        "telemetry_configured",
        otlp_traces=otlp_configured("traces"),
        sentry=bool(settings.sentry_dsn),
    )
    return Telemetry(
        service=service,
        version=version,
        environment=environment,
        enabled=settings.telemetry_enabled,
        http_middleware=settings.telemetry_http_middleware,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        registry=registry,
        drops=drops,
        http=HttpMetrics(meter, fast),
        fast=fast,
        log_shipper=log_shipper,
    )


def _meter_provider(
    resource: Resource,
    registry: CollectorRegistry,
    fast: FastMetrics,
    version: str,
    options: TelemetryOptions,
) -> MeterProvider:
    readers: list[MetricReader] = [
        PrometheusMetricReader(registry=registry, scope_info_enabled=False),
        *options.metric_readers,
    ]
    if otlp_configured("metrics"):
        scope = InstrumentationScope(INSTRUMENTATION_SCOPE, version)
        exporter = MergingMetricExporter(OTLPMetricExporter(), fast, resource, scope)
        readers.append(PeriodicExportingMetricReader(exporter))
    # Exemplars would cost every measurement a reservoir update; the Prometheus text has none.
    return MeterProvider(
        resource=resource, metric_readers=readers, exemplar_filter=AlwaysOffExemplarFilter()
    )


def _tracer_provider(
    resource: Resource, settings: ServiceSettings, drops: DropCounter, options: TelemetryOptions
) -> TracerProvider:
    ratio = settings.trace_sample_rate if settings.trace_sample_rate is not None else 1.0
    provider = TracerProvider(resource=resource, sampler=ParentBased(TraceIdRatioBased(ratio)))
    if otlp_configured("traces"):
        exporter = SafeSpanExporter(sender_of(OTLPSpanExporter()), drops)
        provider.add_span_processor(BatchSpanProcessor(exporter))
    for processor in options.span_processors:
        provider.add_span_processor(processor)
    return provider


def _log_shipper(resource: Resource, drops: DropCounter, version: str) -> LogShipper | None:
    if not otlp_configured("logs"):
        return None
    scope = InstrumentationScope(INSTRUMENTATION_SCOPE, version)
    return LogShipper(sender_of(OTLPLogExporter()), drops, resource, scope)


def _configure_logs(
    service: str,
    settings: ServiceSettings,
    log_shipper: LogShipper | None,
    options: TelemetryOptions,
) -> None:
    exporters: list[Processor] = list(options.log_exporters)
    if log_shipper is not None:
        exporters.append(log_shipper)
    configure_logging(
        LogConfig(
            service=service,
            level=settings.effective_log_level,
            format=settings.effective_log_format,
            sample_rate=settings.log_sample_rate if settings.log_sample_rate is not None else 1.0,
        ),
        exporters=exporters,
    )
