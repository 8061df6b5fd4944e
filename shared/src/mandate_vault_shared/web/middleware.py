"""Per-request telemetry as one lean ASGI middleware: request id, HTTP metrics, access log.

It records ``http_requests_total{method, endpoint, status_code}`` and
``http_request_duration_seconds{method, endpoint}`` with ``endpoint`` the matched route template
(unmatched paths collapse to one value), logs ``http_request`` for every request and
``http_request_error`` plus ``errors_total`` for every 5xx. Health, readiness and metrics
routes are counted but not logged.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mandate_vault_shared.telemetry import Telemetry, get_logger, names
from mandate_vault_shared.telemetry.logs import bind_context

_REQUEST_ID_HEADER: Final = b"x-request-id"
_VALID_REQUEST_ID: Final = re.compile(r"[A-Za-z0-9._:-]{1,64}")
QUIET_PATHS: Final = frozenset({"/healthz", "/readyz", "/api/v1/metrics"})

log = get_logger(__name__)


def _incoming_request_id(scope: Scope) -> str:
    for key, value in scope.get("headers", ()):
        if key == _REQUEST_ID_HEADER:
            candidate: str = value.decode("latin-1")
            if _VALID_REQUEST_ID.fullmatch(candidate):
                return candidate
            break
    return uuid.uuid4().hex


def _endpoint(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else names.UNMATCHED_ENDPOINT


class RequestTelemetryMiddleware:
    def __init__(self, app: ASGIApp, telemetry: Telemetry) -> None:
        self.app = app
        self._http = telemetry.http

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        bind_context(request_id=request_id)
        header = (_REQUEST_ID_HEADER, request_id.encode("latin-1"))
        status = 500
        error_type: str | None = None

        async def send_with_request_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        start = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_request_id)
        except Exception as exc:
            status, error_type = 500, type(exc).__name__
            raise
        finally:
            self._finish(scope, status, time.perf_counter() - start, error_type)

    def _finish(self, scope: Scope, status: int, seconds: float, error_type: str | None) -> None:
        method = scope["method"]
        endpoint = _endpoint(scope)
        self._http.record_request(method, endpoint, status, seconds)
        if scope["path"] in QUIET_PATHS and status < 500:
            return
        duration_ms = round(seconds * 1000, 2)
        log.info(
            "http_request", method=method, route=endpoint, status=status, duration_ms=duration_ms
        )
        if status >= 500:
            error_type = str(error_type or scope["state"].get("error_type") or f"http_{status}")
            severity = "warning" if status == 503 else "error"
            self._http.record_error(error_type, severity)
            log.error(
                "http_request_error",
                method=method,
                route=endpoint,
                status=status,
                duration_ms=duration_ms,
                error_type=error_type,
            )
