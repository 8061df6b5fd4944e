"""Liveness, readiness and metrics routes every service serves."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from fastapi import APIRouter, Request, Response

from mandate_vault_shared.telemetry import Telemetry
from mandate_vault_shared.web.responses import JsonResponse

# A readiness check answers None when healthy, else a short reason (never a secret).
ReadinessCheck = Callable[[Request], Awaitable[str | None]]
_CHECK_TIMEOUT_SECONDS = 2.0


async def _run_check(check: ReadinessCheck, request: Request) -> str | None:
    try:
        return await asyncio.wait_for(check(request), _CHECK_TIMEOUT_SECONDS)
    except TimeoutError:
        return "timed out"
    except Exception as exc:  # a failing check is a "not ready" answer, never a 500
        return type(exc).__name__


def system_router(
    telemetry: Telemetry,
    checks: Mapping[str, ReadinessCheck],
    advisories: Mapping[str, ReadinessCheck] | None = None,
) -> APIRouter:
    """`checks` gate readiness; `advisories` are reported under "degraded" without gating it
    (e.g. a stalled outbox relay: the api still serves, events wait in the outbox)."""
    notes = dict(advisories or {})
    router = APIRouter(include_in_schema=False)

    @router.get("/api/v1/info", include_in_schema=True, tags=["system"])
    async def info() -> JsonResponse:
        """Which service and version answers, and in which environment."""
        return JsonResponse(
            {
                "service": telemetry.service,
                "version": telemetry.version,
                "environment": telemetry.environment,
            }
        )

    @router.get("/healthz")
    async def healthz() -> JsonResponse:
        return JsonResponse({"status": "ok", "service": telemetry.service})

    @router.get("/readyz")
    async def readyz(request: Request) -> JsonResponse:
        everything = {**checks, **notes}
        names = list(everything)
        results = await asyncio.gather(*(_run_check(everything[n], request) for n in names))
        outcome = dict(zip(names, results, strict=True))
        report = {name: (outcome[name] or "ok") for name in checks}
        ready = all(outcome[name] is None for name in checks)
        body: dict[str, object] = {"status": "ready" if ready else "not_ready", "checks": report}
        degraded = {name: outcome[name] for name in notes if outcome[name] is not None}
        if degraded:
            body["degraded"] = degraded
        return JsonResponse(body, status_code=200 if ready else 503)

    @router.get("/api/v1/metrics")
    async def metrics(request: Request) -> Response:
        """Prometheus text, or OpenMetrics with exemplars when the scraper asks for it."""
        accept = request.headers.get("accept", "")
        body, content_type = await asyncio.to_thread(telemetry.exposition, accept)
        return Response(body, media_type=content_type)

    return router
