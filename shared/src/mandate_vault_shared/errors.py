"""Domain errors shared by the services, rendered by one handler into one JSON shape.

    DomainError                      -> {"error": code, "detail": ..., "request_id": ...}
    +-- BadRequest (400)
    +-- Unauthorized (401)
    +-- Forbidden (403)
    +-- NotFound (404)
    +-- Conflict (409)
    +-- PayloadTooLarge (413)
    +-- Unprocessable (422)
    +-- RateLimited (429, Retry-After)
    +-- ServiceUnavailable (503, Retry-After)

Domain code raises these; routes never build HTTP errors by hand. Only `ServiceUnavailable`
counts towards `errors_total` (a dependency failed); client mistakes are not server errors.
"""

from __future__ import annotations

from typing import ClassVar


class DomainError(Exception):
    status: ClassVar[int] = 400
    error_code: ClassVar[str] = "bad_request"
    default_detail: ClassVar[str] = "The request could not be processed."

    def __init__(
        self, detail: str | None = None, *, retry_after: int | None = None, code: str | None = None
    ) -> None:
        self.detail = detail or self.default_detail
        self.retry_after = retry_after
        self.code = code or self.error_code
        super().__init__(self.detail)


class BadRequest(DomainError):
    pass


class Unauthorized(DomainError):
    status = 401
    error_code = "unauthorized"
    default_detail = "Authentication is required."


class Forbidden(DomainError):
    status = 403
    error_code = "forbidden"
    default_detail = "You are not allowed to do this."


class NotFound(DomainError):
    status = 404
    error_code = "not_found"
    default_detail = "Not found."


class Conflict(DomainError):
    status = 409
    error_code = "conflict"
    default_detail = "The request conflicts with the current state."


class PayloadTooLarge(DomainError):
    status = 413
    error_code = "payload_too_large"
    default_detail = "The request is too large."


class Unprocessable(DomainError):
    status = 422
    error_code = "unprocessable"
    default_detail = "The request is well-formed but cannot be processed."


class RateLimited(DomainError):
    status = 429
    error_code = "rate_limited"
    default_detail = "Too many requests; retry later."


class ServiceUnavailable(DomainError):
    status = 503
    error_code = "service_unavailable"
    default_detail = "A dependency is unavailable; retry later."
