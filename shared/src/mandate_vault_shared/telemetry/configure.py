"""`create_telemetry`: build a process's `Telemetry` from its settings and the standard variables.

Called once per process (`serve.run_service`); the result is passed to the app factory. Two
pipelines, chosen by ``TELEMETRY_PIPELINE``, record the same things (tests run both):

- ``fast`` (default): spans encoded by `otlp_wire`, logs shipped by `log_shipper`, instruments
  in plain dicts (`fast_metrics`), the lean request middleware, database spans of our own;
- ``sdk``: the reference, the OpenTelemetry packages as they come: SDK instruments, OTLP
  exporters and BatchLogRecordProcessor, opentelemetry-instrumentation-fastapi for server spans,
  -asyncpg / -sqlalchemy for database spans.

Over gRPC (``OTEL_EXPORTER_OTLP_PROTOCOL=grpc``) spans and logs always take the SDK's exporters
(the fast encoders write the HTTP body).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import (
    AlwaysOffExemplarFilter,
    AlwaysOnExemplarFilter,
    ExemplarFilter,
    MeterProvider,
    TraceBasedExemplarFilter,
)
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import NoOpTracerProvider
from prometheus_client import CollectorRegistry
from structlog.typing import Processor

from mandate_vault_shared.settings import ServiceSettings
from mandate_vault_shared.telemetry import instrumentation, names, standard
from mandate_vault_shared.telemetry.export import (
    CountingBatchSpanProcessor,
    CountingLogExporter,
    DropCounter,
    QueueFullFilter,
    RedactingSpanExporter,
    SafeSpanExporter,
)
from mandate_vault_shared.telemetry.fast_metrics import FastMetrics
from mandate_vault_shared.telemetry.fast_otlp import MergingMetricExporter
from mandate_vault_shared.telemetry.instruments import Metrics
from mandate_vault_shared.telemetry.log_shipper import LogShipper
from mandate_vault_shared.telemetry.logs import LogConfig, configure_logging, get_logger
from mandate_vault_shared.telemetry.metrics import HttpMetrics
from mandate_vault_shared.telemetry.process import FAST, INSTRUMENTATION_SCOPE, SDK, Telemetry
from mandate_vault_shared.telemetry.sdk_logs import SdkLogBridge
from mandate_vault_shared.telemetry.sdk_metrics import ExemplarPrometheusReader, SdkMetrics
from mandate_vault_shared.telemetry.seams import count_before_the_sdk_filters, sender_of
from mandate_vault_shared.telemetry.semconv import HttpClientTelemetry, MessagingTelemetry
from mandate_vault_shared.telemetry.sentry import init_sentry

log = get_logger(__name__)

_EXEMPLAR_FILTERS: dict[str, type[ExemplarFilter]] = {
    "trace_based": TraceBasedExemplarFilter,
    "always_on": AlwaysOnExemplarFilter,
    "always_off": AlwaysOffExemplarFilter,
}


@dataclass(frozen=True)
class TelemetryOptions:
    """Test seams: extra span processors, metric readers and log processors."""

    span_processors: Sequence[SpanProcessor] = ()
    metric_readers: Sequence[MetricReader] = ()
    log_exporters: Sequence[Processor] = ()


@dataclass
class _Parts:
    """What the builders below share."""

    settings: ServiceSettings
    resource: Resource
    scope: InstrumentationScope
    pipeline: str
    options: TelemetryOptions


def create_telemetry(
    service: str,
    version: str,
    settings: ServiceSettings,
    options: TelemetryOptions | None = None,
) -> Telemetry:
    """Traces, metrics, logs and Sentry for this process, from its settings and the standard
    ``OTEL_*`` variables (where both say something, the standard variable wins)."""
    environment = settings.environment.value
    resource = standard.resource(service, version, environment)
    parts = _Parts(
        settings,
        resource,
        InstrumentationScope(INSTRUMENTATION_SCOPE, version),
        settings.telemetry_pipeline,
        options or TelemetryOptions(),
    )
    name = str(resource.attributes.get("service.name", service))
    telemetry = _disabled(parts, name) if settings.otel_sdk_disabled else _enabled(parts, name)
    _start_sentry(settings, name, version)
    log.info(
        "telemetry_configured",
        pipeline=telemetry.pipeline,
        otlp_traces=standard.otlp_configured("traces"),
        sentry=bool(settings.sentry_dsn),
        sdk_disabled=settings.otel_sdk_disabled,
    )
    return telemetry


def _enabled(parts: _Parts, service: str) -> Telemetry:
    settings = parts.settings
    registry = CollectorRegistry(auto_describe=True)
    meter_provider, metrics, closers = _metrics(parts, registry)
    drops = DropCounter(metrics)
    stop_counting = count_before_the_sdk_filters(QueueFullFilter(drops))
    tracer_provider = _tracer_provider(parts, drops)
    closers = [tracer_provider.shutdown, *closers]
    closers += _logs(parts, service, drops)
    closers.append(stop_counting)
    semconv = settings.telemetry_semconv_metrics
    telemetry = Telemetry(
        service=service,
        version=parts.scope.version or "",
        environment=settings.environment.value,
        pipeline=parts.pipeline,
        enabled=settings.telemetry_on,
        semconv=semconv,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        registry=registry,
        metrics=metrics,
        drops=drops,
        http=HttpMetrics(metrics, semconv=semconv),
        http_client=HttpClientTelemetry(
            tracer_provider.get_tracer(INSTRUMENTATION_SCOPE), metrics, semconv=semconv
        ),
        messaging=MessagingTelemetry(
            tracer_provider.get_tracer(INSTRUMENTATION_SCOPE), metrics, semconv=semconv
        ),
        closers=closers,
    )
    _app_info(telemetry)
    if parts.pipeline == SDK and telemetry.enabled:
        instrumentation.instrument_databases(telemetry)
    return telemetry


def _disabled(parts: _Parts, service: str) -> Telemetry:
    """``OTEL_SDK_DISABLED=true``: no spans, no metrics, nothing exported; log lines still go
    to stdout (they are not an OpenTelemetry signal)."""
    metrics = SdkMetrics(NoOpMeterProvider().get_meter(INSTRUMENTATION_SCOPE))
    tracer_provider = NoOpTracerProvider()
    _configure_logs(parts, service, [])
    return Telemetry(
        service=service,
        version=parts.scope.version or "",
        environment=parts.settings.environment.value,
        pipeline=parts.pipeline,
        enabled=False,
        semconv=False,
        tracer_provider=tracer_provider,
        meter_provider=NoOpMeterProvider(),
        registry=CollectorRegistry(auto_describe=True),
        metrics=metrics,
        drops=DropCounter(metrics),
        http=HttpMetrics(metrics, semconv=False),
        http_client=HttpClientTelemetry(
            tracer_provider.get_tracer(INSTRUMENTATION_SCOPE), metrics, semconv=False
        ),
        messaging=MessagingTelemetry(
            tracer_provider.get_tracer(INSTRUMENTATION_SCOPE), metrics, semconv=False
        ),
    )


def _metrics(
    parts: _Parts, registry: CollectorRegistry
) -> tuple[MeterProvider, Metrics, list[Any]]:
    exemplars = parts.settings.otel_metrics_exemplar_filter or standard.exemplar_filter()
    fast = FastMetrics(exemplars) if parts.pipeline == FAST else None
    readers: list[MetricReader] = [
        ExemplarPrometheusReader(registry),
        *parts.options.metric_readers,
    ]
    if standard.otlp_configured("metrics"):
        exporter = instrumentation.metric_exporter(standard.protocol("metrics"))
        if fast is not None:  # the fast instruments join every OTLP batch
            exporter = MergingMetricExporter(exporter, fast, parts.resource, parts.scope)
        readers.append(PeriodicExportingMetricReader(exporter))
    provider = MeterProvider(
        resource=parts.resource,
        metric_readers=readers,
        exemplar_filter=_EXEMPLAR_FILTERS[exemplars](),
    )
    meter = provider.get_meter(parts.scope.name, parts.scope.version)
    if fast is None:
        return provider, SdkMetrics(meter), [provider.shutdown]
    fast.bind(meter)
    registry.register(fast)
    return provider, fast, [provider.shutdown]


def _tracer_provider(parts: _Parts, drops: DropCounter) -> TracerProvider:
    settings = parts.settings
    ratio = settings.trace_sample_rate if settings.trace_sample_rate is not None else 1.0
    provider = TracerProvider(
        resource=parts.resource,
        sampler=standard.sampler(standard.SamplerChoice(settings.traces_sampler, ratio)),
    )
    if standard.otlp_configured("traces"):
        provider.add_span_processor(
            CountingBatchSpanProcessor(
                _span_exporter(parts.pipeline, drops), drops, **standard.span_batching()
            )
        )
    for processor in parts.options.span_processors:
        provider.add_span_processor(processor)
    return provider


def _span_exporter(pipeline: str, drops: DropCounter) -> Any:
    chosen = standard.protocol("traces")
    exporter = instrumentation.span_exporter(chosen)
    if pipeline == FAST and chosen == standard.HTTP_PROTOBUF:
        return SafeSpanExporter(sender_of(exporter), drops)
    return RedactingSpanExporter(exporter, drops)


def _logs(parts: _Parts, service: str, drops: DropCounter) -> list[Any]:
    """Log lines to stdout and, when configured, over OTLP; returns what shutdown closes."""
    if not standard.otlp_configured("logs"):
        _configure_logs(parts, service, [])
        return []
    chosen = standard.protocol("logs")
    exporter = instrumentation.log_exporter(chosen)
    if parts.pipeline == FAST and chosen == standard.HTTP_PROTOBUF:
        shipper = LogShipper(sender_of(exporter), drops, parts.resource, parts.scope)
        _configure_logs(parts, service, [shipper])
        return [shipper.shutdown]
    provider = LoggerProvider(resource=parts.resource)
    provider.add_log_record_processor(BatchLogRecordProcessor(CountingLogExporter(exporter, drops)))
    logger = provider.get_logger(parts.scope.name, parts.scope.version)
    _configure_logs(parts, service, [SdkLogBridge(logger)])  # type: ignore[arg-type]
    return [provider.shutdown]


def _configure_logs(parts: _Parts, service: str, exporters: list[Processor]) -> None:
    settings = parts.settings
    configure_logging(
        LogConfig(
            service=service,
            level=settings.effective_log_level,
            format=settings.effective_log_format,
            sample_rate=settings.log_sample_rate if settings.log_sample_rate is not None else 1.0,
        ),
        exporters=[*parts.options.log_exporters, *exporters],
    )


def _app_info(telemetry: Telemetry) -> None:
    labels = (telemetry.version, telemetry.environment, telemetry.service)
    telemetry.metrics.observe(
        names.APP_INFO,
        "Application version and environment",
        ("version", "environment", "service"),
        lambda: [(labels, 1.0)],
    )


def _start_sentry(settings: ServiceSettings, service: str, version: str) -> None:
    if settings.sentry_dsn is not None:
        init_sentry(
            dsn=settings.sentry_dsn.get_secret_value(),
            environment=settings.environment.value,
            release=f"{service}@{version}",
            traces_sample_rate=settings.sentry_traces_sample_rate or 0.0,
            server_name=service,
        )
