"""The skeleton every service's `create_app` builds on."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import FastAPI
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.metrics import NoOpMeterProvider

from mandate_vault_shared.telemetry import Telemetry
from mandate_vault_shared.web.handlers import install_error_handlers
from mandate_vault_shared.web.limits import BodyLimitMiddleware
from mandate_vault_shared.web.middleware import RequestTelemetryMiddleware
from mandate_vault_shared.web.system import ReadinessCheck, system_router

_UNTRACED_URLS = r"/healthz$,/readyz$,/api/v1/metrics$"


def build_app(
    *,
    title: str,
    description: str,
    telemetry: Telemetry,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[Any]],
    readiness: Mapping[str, ReadinessCheck],
    openapi_tags: list[dict[str, str]] | None = None,
    dependency_errors: tuple[type[Exception], ...] = (),
    max_body_size: int = 1 << 20,
    advisories: Mapping[str, ReadinessCheck] | None = None,
) -> FastAPI:
    app = FastAPI(
        title=title,
        description=description,
        version=telemetry.version,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
        openapi_tags=openapi_tags,
        max_body_size=None,  # ours below answers in the shared error shape
        # FastAPI's native OpenTelemetry support switches itself on whenever global providers
        # exist; ours (below) is the one source of HTTP spans and metrics.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    install_error_handlers(app, dependency_errors=dependency_errors)
    app.include_router(system_router(telemetry, readiness, advisories))
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_body_size)
    if telemetry.enabled:
        app.add_middleware(RequestTelemetryMiddleware, telemetry=telemetry)
        # One server span per request: no receive/send spans, no duplicate HTTP metrics
        # (ours above carry the guide's names), probes and scrapes untraced.
        FastAPIInstrumentor.instrument_app(
            app,
            tracer_provider=telemetry.tracer_provider,
            meter_provider=NoOpMeterProvider(),
            excluded_urls=_UNTRACED_URLS,
            exclude_spans=["receive", "send"],
        )
    return app
