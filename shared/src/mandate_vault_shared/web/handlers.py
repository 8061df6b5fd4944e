"""The one place HTTP errors are rendered: ``{"error", "detail", "request_id"}`` for all 4xx/5xx."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from mandate_vault_shared.errors import DomainError, ServiceUnavailable
from mandate_vault_shared.telemetry.sentry import capture_exception
from mandate_vault_shared.web.responses import JsonResponse

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
}


def request_id_of(request: Request) -> str:
    return str(getattr(request.state, "request_id", "") or "")


def error_response(
    request: Request,
    status: int,
    code: str,
    detail: Any,
    *,
    headers: Mapping[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JsonResponse:
    request_id = request_id_of(request)
    body: dict[str, Any] = {"error": code, "detail": detail, "request_id": request_id}
    if extra:
        body.update(extra)
    return JsonResponse(body, status_code=status, headers=headers)


async def _domain_error(request: Request, exc: Exception) -> JsonResponse:
    assert isinstance(exc, DomainError)
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
    if isinstance(exc, ServiceUnavailable):
        request.state.error_type = type(exc).__name__
    return error_response(request, exc.status, exc.code, exc.detail, headers=headers)


async def _validation_error(request: Request, exc: Exception) -> JsonResponse:
    assert isinstance(exc, RequestValidationError)
    # Never echo the offending input back: it may be a password or a token.
    fields = [
        {
            "loc": [str(p) for p in err.get("loc", ())],
            "msg": err.get("msg"),
            "type": err.get("type"),
        }
        for err in exc.errors()
    ]
    return error_response(
        request, 422, "validation_error", "The request is invalid.", extra={"fields": fields}
    )


async def _http_error(request: Request, exc: Exception) -> JsonResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _STATUS_CODES.get(exc.status_code, "http_error")
    detail = exc.detail if isinstance(exc.detail, str) else "HTTP error"
    return error_response(request, exc.status_code, code, detail, headers=exc.headers)


async def _unhandled(request: Request, exc: Exception) -> JsonResponse:
    request.state.error_type = type(exc).__name__
    capture_exception(exc)
    # Rendered outside the request middleware, so the request id header is added here.
    return error_response(
        request,
        500,
        "internal_error",
        "An unexpected error occurred.",
        headers={"x-request-id": request_id_of(request)},
    )


_UNAVAILABLE_RETRY_AFTER = 5


async def _dependency_down(request: Request, exc: Exception) -> JsonResponse:
    request.state.error_type = type(exc).__name__
    return error_response(
        request,
        503,
        ServiceUnavailable.error_code,
        ServiceUnavailable.default_detail,
        headers={"Retry-After": str(_UNAVAILABLE_RETRY_AFTER)},
    )


def install_error_handlers(
    app: FastAPI, *, dependency_errors: tuple[type[Exception], ...] = ()
) -> None:
    """Register the one error shape. `dependency_errors` are exceptions meaning "a dependency
    (database, broker) is down": answered 503 with Retry-After, counted, never a crash."""
    for error_type in dependency_errors:
        app.add_exception_handler(error_type, _dependency_down)
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unhandled)
