"""``POST /api/v1/verify``: one verification outcome per request, always HTTP 200.

Exceptions to 200: a body or token over the size cap is 413 and a body that is not the
request JSON is 422, both in the shared error shape.
"""

from __future__ import annotations

import time
from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError

from mandate_vault_shared.errors import PayloadTooLarge
from mandate_vault_shared.web.responses import JsonResponse
from mandate_vault_verifier.deps import MaxRequestBytesDep, RecorderDep, VerifierDep
from mandate_vault_verifier.statuses import VerificationStatus
from mandate_vault_verifier.verifier import VerificationResult

MAX_ALLOWED_ISSUERS: Final = 1000

router = APIRouter(prefix="/api/v1", tags=["verify"])


class VerifyRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    jwt: StrictStr = Field(description="The mandate as a compact JWS.")
    allowed_issuers: list[StrictStr] | None = Field(
        None,
        max_length=MAX_ALLOWED_ISSUERS,
        description="The tenant's issuer allow-list; null means the truststore alone decides.",
    )


class MandateOut(BaseModel):
    scope: str
    amount_limit: str = Field(description='Decimal string with two decimals, e.g. "123.45".')
    currency: str
    expires_at: str = Field(description="ISO-8601 UTC, from exp.")


class VerifyResponse(BaseModel):
    status: VerificationStatus
    reason: str | None
    issuer: str | None = Field(description="From the payload; trusted only with claims.")
    subject: str | None
    key_id: str | None = Field(description="The trusted key that was selected.")
    claims: dict[str, Any] | None = Field(description="Only when the signature verified.")
    mandate: MandateOut | None


_REQUEST_BODY: Final = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": VerifyRequest.model_json_schema()}},
    }
}


@router.post(
    "/verify",
    summary="Verify a mandate JWT",
    response_model=VerifyResponse,
    openapi_extra=_REQUEST_BODY,
    responses={413: {"description": "Token or body too large"}, 422: {"description": "Bad JSON"}},
)
async def verify(
    request: Request,
    verifier: VerifierDep,
    recorder: RecorderDep,
    max_request_bytes: MaxRequestBytesDep,
) -> JsonResponse:
    start = time.perf_counter()
    body = await _read_body(request, max_request_bytes)
    if body is None:
        result = VerificationResult(VerificationStatus.TOKEN_TOO_LARGE, "The body is too large.")
    else:
        parsed = _parse(body)
        result = await verifier.verify(parsed.jwt, parsed.allowed_issuers)
    recorder.record(result, time.perf_counter() - start)
    if result.status is VerificationStatus.TOKEN_TOO_LARGE:
        raise PayloadTooLarge(result.reason)
    return JsonResponse(result.to_json())


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The body, or None as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _parse(body: bytes) -> VerifyRequest:
    try:
        return VerifyRequest.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_input=False, include_url=False, include_context=False)
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in errors]
        ) from None
