"""Per-request telemetry in one lean ASGI middleware: server span, HTTP metrics, access log.

For every request it:

- continues the caller's W3C trace and opens one SERVER span named ``{method} {route}`` with the
  stable HTTP semantic-convention attributes (``http.request.method``, ``http.route``,
  ``url.path``, ``url.scheme``, ``http.response.status_code``, ``server.address``,
  ``client.address``, ``user_agent.original``, ``error.type``); attributes are only computed
  for spans that are recorded, so unsampled requests cost almost nothing;
- records ``http_requests_total{method, endpoint, status_code}``,
  ``http_request_duration_seconds{method, endpoint}`` (``endpoint`` is the route template;
  unmatched paths collapse to one value) and ``http.server.request.duration`` — inside the
  server span, so sampled requests leave exemplars;
- logs ``http_request`` (and ``http_request_error`` plus ``errors_total`` for every 5xx).

Health, readiness and metrics routes are counted but neither traced nor logged. Requests refused
by admission control never get here: `admission.py` answers and counts them before this runs.

In the fast pipeline it also opens the server span, in place of opentelemetry-instrumentation-
fastapi's middleware, which builds attributes for unsampled spans, looks the route up by
iterating the app's routes and wraps send/receive (README, Performance, has the paired
measurements). In the SDK pipeline (``TELEMETRY_PIPELINE=sdk``) that instrumentation opens it
and this middleware runs with ``tracing=False``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from contextvars import Token
from typing import Final

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mandate_vault_shared.telemetry import Telemetry, get_logger, names
from mandate_vault_shared.telemetry.logs import bind_context
from mandate_vault_shared.telemetry.seams import set_plain_attributes
from mandate_vault_shared.web.admission import ARRIVED_STATE_KEY
from mandate_vault_shared.web.request_id import REQUEST_ID_HEADER, header, incoming_request_id

QUIET_PATHS: Final = frozenset({"/healthz", "/readyz", "/api/v1/metrics"})

log = get_logger(__name__)

Headers = Sequence[tuple[bytes, bytes]]


class _AsgiHeaders(Getter[Headers]):
    def get(self, carrier: Headers, key: str) -> list[str] | None:
        wanted = key.encode()
        found = [v.decode("latin-1") for k, v in carrier if k == wanted]
        return found or None

    def keys(self, carrier: Headers) -> list[str]:
        return [k.decode("latin-1") for k, _ in carrier]


_GETTER: Final = _AsgiHeaders()


def _endpoint(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else names.UNMATCHED_ENDPOINT


def _start_attributes(scope: Scope) -> dict[str, str | int]:
    headers = scope.get("headers", ())
    attributes: dict[str, str | int] = {
        "http.request.method": scope["method"],
        "url.path": scope["path"],
        "url.scheme": scope.get("scheme", "http"),
        "network.protocol.version": scope.get("http_version", "1.1"),
    }
    server = scope.get("server")
    if server:
        attributes["server.address"], attributes["server.port"] = server[0], server[1]
    client = scope.get("client")
    if client:
        attributes["client.address"] = client[0]
    agent = header(headers, b"user-agent")
    if agent:
        attributes["user_agent.original"] = agent[:256]
    return attributes


class RequestTelemetryMiddleware:
    def __init__(self, app: ASGIApp, telemetry: Telemetry, *, tracing: bool = True) -> None:
        self.app = app
        self._http = telemetry.http
        self._tracer = telemetry.tracer if tracing else None
        # At LOG_LEVEL=WARNING (production) no access line is built at all.
        self._access_log = log.is_enabled_for(logging.INFO)
        # The headers the configured propagators (OTEL_PROPAGATORS) read.
        self._context_headers = frozenset(
            name.lower().encode("latin-1") for name in propagate.get_global_textmap().fields
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = incoming_request_id(scope)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        bind_context(request_id=request_id)
        id_header = (REQUEST_ID_HEADER, request_id.encode("latin-1"))
        status = 500
        error_type: str | None = None

        async def send_with_request_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        span, token = self._start_span(scope)
        # from its arrival: the time it waited for admission counts in its duration
        start = state.get(ARRIVED_STATE_KEY) or time.perf_counter()
        try:
            await self.app(scope, receive, send_with_request_id)
        except Exception as exc:
            status, error_type = 500, type(exc).__name__
            if span is not None and span.is_recording():
                span.record_exception(exc)
            raise
        finally:
            self._finish(scope, status, time.perf_counter() - start, error_type, span)
            if token is not None:
                otel_context.detach(token)

    def _start_span(self, scope: Scope) -> tuple[trace.Span | None, Token[Context] | None]:
        if self._tracer is None or scope["path"] in QUIET_PATHS:
            return None, None
        headers = scope.get("headers", ())
        # Most callers send no trace context: skip the propagators' parsing for them.
        carried = any(key in self._context_headers for key, _ in headers)
        parent = propagate.extract(headers, getter=_GETTER) if carried else None
        span = self._tracer.start_span(scope["method"], context=parent, kind=SpanKind.SERVER)
        if span.is_recording():
            set_plain_attributes(span, _start_attributes(scope))
        return span, otel_context.attach(trace.set_span_in_context(span, parent))

    def _finish(
        self,
        scope: Scope,
        status: int,
        seconds: float,
        error_type: str | None,
        span: trace.Span | None,
    ) -> None:
        method = scope["method"]
        endpoint = _endpoint(scope)
        if status >= 500:
            error_type = str(error_type or scope["state"].get("error_type") or status)
        self._http.record_request(
            method,
            endpoint,
            status,
            seconds,
            scheme=scope.get("scheme", "http"),
            error_type=error_type,
        )
        if span is not None:
            self._end_span(span, method, endpoint, status, error_type)
        if scope["path"] in QUIET_PATHS and status < 500:
            return
        duration_ms = round(seconds * 1000, 2)
        if self._access_log:
            log.info(
                "http_request",
                method=method,
                route=endpoint,
                status=status,
                duration_ms=duration_ms,
            )
        if status >= 500:
            severity = "warning" if status == 503 else "error"
            self._http.record_error(str(error_type), severity)
            log.error(
                "http_request_error",
                method=method,
                route=endpoint,
                status=status,
                duration_ms=duration_ms,
                error_type=error_type,
            )

    @staticmethod
    def _end_span(
        span: trace.Span, method: str, endpoint: str, status: int, error_type: str | None
    ) -> None:
        if span.is_recording():
            attributes: dict[str, str | int] = {}
            if endpoint != names.UNMATCHED_ENDPOINT:
                span.update_name(f"{method} {endpoint}")
                attributes["http.route"] = endpoint
            attributes["http.response.status_code"] = status
            if error_type is not None:
                attributes["error.type"] = error_type
                span.set_status(Status(StatusCode.ERROR))
            set_plain_attributes(span, attributes)
        span.end()
