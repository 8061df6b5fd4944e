"""``POST /api/v1/verify``: one verification outcome per request, always HTTP 200.

Exceptions to 200: a body or token over the size cap is 413 and a body that is not the
request JSON is 422, both in the shared error shape.
"""

from __future__ import annotations

import time
from typing import Any, Final

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from mandate_vault_shared.errors import PayloadTooLarge
from mandate_vault_shared.web.bodies import openapi_body, parse_json_body
from mandate_vault_shared.web.responses import JsonResponse
from mandate_vault_verifier.deps import context_of
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
    include_claims: bool = Field(
        True,
        description="Return the verified payload as `claims`; callers that only store the "
        "outcome send false for a smaller answer.",
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


@router.post(
    "/verify",
    summary="Verify a mandate JWT",
    response_model=VerifyResponse,
    openapi_extra=openapi_body(VerifyRequest),
    responses={413: {"description": "Token or body too large"}, 422: {"description": "Bad JSON"}},
)
async def verify(
    request: Request,
) -> JsonResponse:
    start = time.perf_counter()
    context = context_of(request)
    verifier, recorder = context.verifier, context.recorder
    body = await _read_body(request, context.max_request_bytes)
    include_claims = True
    if body is None:
        result = VerificationResult(VerificationStatus.TOKEN_TOO_LARGE, "The body is too large.")
    else:
        parsed = parse_json_body(body, VerifyRequest)
        include_claims = parsed.include_claims
        result = await verifier.verify(parsed.jwt, parsed.allowed_issuers)
    recorder.record(result, time.perf_counter() - start)
    if result.status is VerificationStatus.TOKEN_TOO_LARGE:
        raise PayloadTooLarge(result.reason)
    return JsonResponse(result.to_json(include_claims=include_claims))


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
