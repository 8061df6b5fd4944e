"""The OpenAPI document, corrected to describe the one error shape every 4xx/5xx has.

FastAPI documents its own 422 body (``HTTPValidationError``: ``{"detail": [...]}``), but our
handler answers every error, 422 included, as ``{"error", "detail", "request_id"}`` (plus
``fields`` on a 422). Clients generated from the document must see the body they will get.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field

_ERROR_REF = "#/components/schemas/ErrorBody"
_FASTAPI_ERROR_SCHEMAS = ("HTTPValidationError", "ValidationError")


class FieldError(BaseModel):
    loc: list[str] = Field(description="Where the bad value is, e.g. ['body', 'vc_jwt'].")
    msg: str
    type: str


class ErrorBody(BaseModel):
    error: str = Field(description="A stable machine-readable code, e.g. validation_error.")
    detail: str = Field(description="What went wrong, for people.")
    request_id: str = Field(description="Quote it to support: it is in our logs and traces.")
    fields: list[FieldError] | None = Field(
        default=None, description="On 422 only: each invalid field (the input is never echoed)."
    )


def _point_errors_at_error_body(document: dict[str, Any]) -> None:
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            for code, response in operation.get("responses", {}).items():
                if code.isdigit() and int(code) >= 400:
                    response.setdefault("description", "Error")
                    response["content"] = {"application/json": {"schema": {"$ref": _ERROR_REF}}}


def _error_body_schemas() -> dict[str, Any]:
    schema = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    definitions = schema.pop("$defs", {})
    return {"ErrorBody": schema, **definitions}


def install_error_schema(app: FastAPI) -> None:
    """Make ``app.openapi()`` document ErrorBody for every error response it lists."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
                tags=app.openapi_tags,
            )
            _point_errors_at_error_body(document)
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            for name in _FASTAPI_ERROR_SCHEMAS:
                schemas.pop(name, None)
            schemas.update(_error_body_schemas())
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
