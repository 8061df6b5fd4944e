"""JSON request bodies parsed and validated in one pass, for hot routes that read their body
themselves rather than through a FastAPI body parameter.

FastAPI decodes a body parameter with the standard library's JSON parser and then validates
the resulting dict; pydantic's ``model_validate_json`` does both in one pass over the bytes.
Errors become the same `RequestValidationError` (locations under ``body``) FastAPI raises, so
the answer is the usual 422 in the one error shape. `openapi_body` documents such a body.
"""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def parse_json_body(body: bytes, model: type[M]) -> M:
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_input=False, include_url=False, include_context=False)
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in errors]
        ) from None


def openapi_body(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` describing a required JSON body of `model`."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }
