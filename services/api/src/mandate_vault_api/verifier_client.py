"""The api's client for the jwt-verifier: keep-alive connections, a timeout, and trace context
on every call. A verifier that is down or slow is a 503, never a half-stored mandate.

The hop is kept cheap: a lean keep-alive client (`mandate_vault_shared.keepalive`: aiohttp cost
a quarter of a create's CPU here), the request body encoded once with orjson, the verifier
asked to leave the token's claims out of its answer (the api stores only the outcome), and the
answer parsed and validated in one step from its bytes."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

import orjson
from pydantic import BaseModel, ValidationError
from yarl import URL

from mandate_vault_shared.errors import PayloadTooLarge, ServiceUnavailable
from mandate_vault_shared.http_client import client_call
from mandate_vault_shared.keepalive import KeepAliveClient
from mandate_vault_shared.telemetry.semconv import HttpClientTelemetry

VERIFIER_RETRY_AFTER = 5
VERIFY_PATH: Final = "/api/v1/verify"
_JSON_HEADERS: Final = {"Content-Type": "application/json"}


class MandateTerms(BaseModel):
    scope: str
    amount_limit: Decimal
    currency: str
    expires_at: datetime


class Verification(BaseModel):
    status: str
    reason: str | None = None
    issuer: str | None = None
    subject: str | None = None
    key_id: str | None = None
    claims: dict[str, Any] | None = None
    mandate: MandateTerms | None = None

    @property
    def valid(self) -> bool:
        return self.status == "VALID"


class VerifierUnavailable(ServiceUnavailable):
    error_code = "verifier_unavailable"
    default_detail = "Mandate verification is unavailable; retry later."


@dataclass
class VerifierClient:
    http: KeepAliveClient
    calls: HttpClientTelemetry
    timeout_seconds: float
    _target: URL = field(init=False)

    def __post_init__(self) -> None:
        self._target = self.http.base.with_path(self.http.base.path.rstrip("/") + VERIFY_PATH)

    async def verify(self, token: str, allowed_issuers: Sequence[str]) -> Verification:
        body = orjson.dumps(
            {"jwt": token, "allowed_issuers": list(allowed_issuers), "include_claims": False}
        )
        with client_call(self.calls, "POST", self._target, _JSON_HEADERS) as call:
            try:
                # Verification reads nothing but its input: safe to send again on a new
                # connection when an idle one turns out closed.
                async with asyncio.timeout(self.timeout_seconds):
                    answer = await self.http.post(
                        self._target.raw_path, body, call.headers, idempotent=True
                    )
            except (OSError, TimeoutError) as exc:  # ConnectionError is an OSError
                call.failed(exc)
                raise VerifierUnavailable(retry_after=VERIFIER_RETRY_AFTER) from exc
            call.answered(answer.status)
        if answer.status == 413:
            raise PayloadTooLarge("The mandate token is too large.")
        if answer.status != 200:
            raise VerifierUnavailable(retry_after=VERIFIER_RETRY_AFTER)
        try:
            return Verification.model_validate_json(answer.body)
        except ValidationError as exc:
            raise VerifierUnavailable(retry_after=VERIFIER_RETRY_AFTER) from exc

    async def close(self) -> None:
        await self.http.close()
