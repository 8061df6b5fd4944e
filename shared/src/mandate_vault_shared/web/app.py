"""The skeleton every service's `create_app` builds on."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from typing import Any

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.metrics import NoOpMeterProvider
from starlette.types import ASGIApp

from mandate_vault_shared.telemetry import Telemetry
from mandate_vault_shared.telemetry.process import FAST
from mandate_vault_shared.web.admission import (
    AdmissionControl,
    AdmissionMiddleware,
    observe_budgets,
)
from mandate_vault_shared.web.handlers import install_error_handlers
from mandate_vault_shared.web.limits import BodyLimitMiddleware
from mandate_vault_shared.web.middleware import RequestTelemetryMiddleware
from mandate_vault_shared.web.openapi import install_error_schema
from mandate_vault_shared.web.system import ReadinessCheck, system_router

_UNTRACED_URLS = r"/healthz$,/readyz$,/api/v1/metrics$"
# Swagger UI and ReDoc come from the fastapi-offline distribution, served by the app itself:
# the docs work in closed networks (FastAPI's defaults load them from a CDN).
DOCS_ASSETS_URL = "/docs/assets"


def _wrap_middleware_stack(app: FastAPI, edge: Callable[[ASGIApp], ASGIApp]) -> None:
    """Put `edge` around the whole middleware stack, the error handler included: it answers
    before any of it runs. (Starlette always puts its error handler outermost; the OpenTelemetry
    FastAPI instrumentation wraps the stack the same way.)"""
    build = app.build_middleware_stack

    def build_with_edge() -> ASGIApp:
        return edge(build())

    app.build_middleware_stack = build_with_edge  # type: ignore[method-assign]


def _frozen_after_startup(
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[Any]],
    admission: AdmissionControl | None,
) -> Callable[[FastAPI], AbstractAsyncContextManager[Any]]:
    """Once startup has built every long-lived object (the OpenAPI document included: routes
    are all known now, and admission control labels refusals with its paths), move them out of
    the cyclic garbage collector's reach: full collections then scan only what requests
    allocate, which keeps their pauses (and the latency tail) short."""

    @asynccontextmanager
    async def run(app: FastAPI) -> AsyncIterator[Any]:
        async with lifespan(app) as state:
            paths = app.openapi().get("paths", {})
            if admission is not None:
                admission.learn_routes(paths)
            gc.collect()
            gc.freeze()
            yield state

    return run


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
    admission: AdmissionControl | None = None,
) -> FastAPI:
    app = FastAPIOffline(
        title=title,
        description=description,
        version=telemetry.version,
        lifespan=_frozen_after_startup(lifespan, admission),
        docs_url="/docs",
        redoc_url="/redoc",
        static_url=DOCS_ASSETS_URL,
        openapi_url="/openapi.json",
        openapi_tags=openapi_tags,
        max_body_size=None,  # ours below answers in the shared error shape
        # FastAPI's native OpenTelemetry support switches itself on whenever global providers
        # exist; ours (below) is the one source of HTTP spans and metrics.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    install_error_handlers(app, dependency_errors=dependency_errors)
    install_error_schema(app)
    app.include_router(system_router(telemetry, readiness, advisories))
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_body_size)
    _instrument(app, telemetry)
    if admission is not None:  # outside everything, instrumentation included: a refusal is cheap
        admission.http = telemetry.http if telemetry.enabled else None
        _wrap_middleware_stack(app, partial(AdmissionMiddleware, control=admission))
        observe_budgets(admission, telemetry.metrics)
        app.state.admission = admission  # the HTTP server refuses at its edge (web/edge.py)
    return app


def _instrument(app: FastAPI, telemetry: Telemetry) -> None:
    if not telemetry.enabled:
        return
    fast = telemetry.pipeline == FAST
    app.add_middleware(RequestTelemetryMiddleware, telemetry=telemetry, tracing=fast)
    if not fast:
        # SDK pipeline: server spans from the contrib instrumentation (one per request, probes
        # untraced); the guide's and semantic-convention metrics and the access log stay with
        # the middleware above, so both pipelines record the same series.
        FastAPIInstrumentor.instrument_app(
            app,
            tracer_provider=telemetry.tracer_provider,
            meter_provider=NoOpMeterProvider(),
            excluded_urls=_UNTRACED_URLS,
            exclude_spans=["receive", "send"],
        )
