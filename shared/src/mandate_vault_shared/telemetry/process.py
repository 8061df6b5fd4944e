"""`Telemetry`: everything a process records with, created once (`configure.create_telemetry`)
and handed explicitly to whatever needs it. Nothing here is a process global: the providers
are never installed as the OpenTelemetry API's global ones."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import Tracer, TracerProvider
from prometheus_client import CONTENT_TYPE_LATEST as PROMETHEUS_TEXT
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_TEXT
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from mandate_vault_shared.telemetry import names
from mandate_vault_shared.telemetry.export import DropCounter
from mandate_vault_shared.telemetry.instruments import Metrics, UpDown
from mandate_vault_shared.telemetry.metrics import HttpMetrics
from mandate_vault_shared.telemetry.semconv import (
    DbTelemetry,
    HttpClientTelemetry,
    MessagingTelemetry,
)
from mandate_vault_shared.telemetry.sentry import flush_sentry

INSTRUMENTATION_SCOPE: Final = "mandate_vault"
SHUTDOWN_TIMEOUT_SECONDS: Final = 5.0
FAST, SDK = "fast", "sdk"


@dataclass
class Telemetry:
    service: str  # service.name of the resource (OTEL_SERVICE_NAME wins over the code's)
    version: str
    environment: str
    pipeline: str  # FAST or SDK
    enabled: bool  # request telemetry (middleware, instrumentation) runs
    semconv: bool  # semantic-convention metrics beside the guide's
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    registry: CollectorRegistry
    metrics: Metrics
    drops: DropCounter
    http: HttpMetrics
    http_client: HttpClientTelemetry
    messaging: MessagingTelemetry
    # Closed by `shutdown`, in order (providers, log export, instrumentation).
    closers: list[Callable[[], Any]] = field(default_factory=list, repr=False)
    # Per engine, in the SDK pipeline: the sqlalchemy instrumentation's spans for SQLite.
    engine_instrumentation: Callable[[Any], None] | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _shut_down: bool = field(default=False, repr=False)

    @property
    def tracer(self) -> Tracer:
        return self.tracer_provider.get_tracer(INSTRUMENTATION_SCOPE, self.version)

    def database(self, system: str) -> DbTelemetry:
        """Statement telemetry for a database (``postgresql`` or ``sqlite``)."""
        tracer = self.tracer if self.pipeline == FAST else None
        return DbTelemetry(tracer, self.metrics, system, semconv=self.semconv)

    def connections(self) -> UpDown:
        """``db_connections_active``: every pool of the process counts in it."""
        return self.metrics.up_down(
            names.DB_CONNECTIONS_ACTIVE, "Database connections checked out now"
        )

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """The metrics for a scrape: OpenMetrics (with exemplars) when the scraper asks for it,
        else the Prometheus text format."""
        if "application/openmetrics-text" in accept:
            return generate_openmetrics(self.registry), OPENMETRICS_TEXT  # type: ignore[no-untyped-call]
        return generate_latest(self.registry), PROMETHEUS_TEXT

    def prometheus_text(self) -> bytes:
        return generate_latest(self.registry)

    def shutdown(self) -> None:
        """Flush and stop exporters, bounded in time even when the collector black-holes."""
        with self._lock:
            if self._shut_down:
                return
            self._shut_down = True
        worker = threading.Thread(target=self._close_all, daemon=True)
        worker.start()
        worker.join(SHUTDOWN_TIMEOUT_SECONDS)
        flush_sentry()

    def _close_all(self) -> None:
        for close in self.closers:
            close()
