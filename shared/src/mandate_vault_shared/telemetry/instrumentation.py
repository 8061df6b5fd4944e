"""The OpenTelemetry packages the telemetry stands on: OTLP exporters by protocol, and the
contrib instrumentation of database drivers (SDK pipeline).

Exporters are built without arguments, so they read the standard variables themselves
(endpoint, headers, timeout, compression, certificates, per signal or shared).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.metrics import NoOpMeterProvider

from mandate_vault_shared.telemetry.standard import GRPC

if TYPE_CHECKING:
    from mandate_vault_shared.telemetry.process import Telemetry


def span_exporter(protocol: str) -> Any:
    if protocol == GRPC:  # imported on demand: gRPC is a heavy import nobody else needs
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # noqa: PLC0415
            OTLPSpanExporter as GrpcSpanExporter,
        )

        return GrpcSpanExporter()
    return OTLPSpanExporter()


def log_exporter(protocol: str) -> Any:
    if protocol == GRPC:
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import (  # noqa: PLC0415
            OTLPLogExporter as GrpcLogExporter,
        )

        return GrpcLogExporter()
    return OTLPLogExporter()


def metric_exporter(protocol: str) -> Any:
    if protocol == GRPC:
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (  # noqa: PLC0415
            OTLPMetricExporter as GrpcMetricExporter,
        )

        return GrpcMetricExporter()
    return OTLPMetricExporter()


def instrument_databases(telemetry: Telemetry) -> None:
    """SDK pipeline: asyncpg's statements (SQLAlchemy's on PostgreSQL and the direct ones)
    become CLIENT spans under the current span; `instrument_engine` covers SQLite."""
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor  # noqa: PLC0415

    instrumentor = AsyncPGInstrumentor()  # type: ignore[no-untyped-call]
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(tracer_provider=telemetry.tracer_provider)
        telemetry.closers.append(instrumentor.uninstrument)
    telemetry.engine_instrumentation = lambda engine: _instrument_sqlite(telemetry, engine)


def _instrument_sqlite(telemetry: Telemetry, engine: Any) -> None:
    if engine.dialect.name != "sqlite":
        return  # asyncpg's instrumentation sees those statements
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer  # noqa: PLC0415
    from opentelemetry.instrumentation.sqlalchemy.version import __version__  # noqa: PLC0415

    tracer = telemetry.tracer_provider.get_tracer(
        "opentelemetry.instrumentation.sqlalchemy", __version__
    )
    usage = NoOpMeterProvider().get_meter("unused").create_up_down_counter("unused")
    EngineTracer(tracer, engine, usage, False, {}, False)  # type: ignore[no-untyped-call]
