"""The api's client for the jwt-verifier: one shared keep-alive session, a timeout, and trace
context on every call. A verifier that is down or slow is a 503, never a half-stored mandate.

The hop is kept cheap: the request body is encoded once with orjson, the verifier is asked to
leave the token's claims out of its answer (the api stores only the outcome), and the answer is
parsed and validated in one step from its bytes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

import aiohttp
import orjson
from opentelemetry.trace import Tracer
from pydantic import BaseModel
from yarl import URL

from mandate_vault_shared.errors import PayloadTooLarge, ServiceUnavailable
from mandate_vault_shared.http_client import traced_request

VERIFIER_RETRY_AFTER = 5
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
    base_url: str
    session: aiohttp.ClientSession
    tracer: Tracer
    _url: URL = field(init=False)

    def __post_init__(self) -> None:
        self._url = URL(f"{self.base_url}/api/v1/verify")

    async def verify(self, token: str, allowed_issuers: Sequence[str]) -> Verification:
        body = orjson.dumps(
            {"jwt": token, "allowed_issuers": list(allowed_issuers), "include_claims": False}
        )
        try:
            async with traced_request(
                self.session, self.tracer, "POST", self._url, data=body, headers=_JSON_HEADERS
            ) as response:
                if response.status == 413:
                    raise PayloadTooLarge("The mandate token is too large.")
                if response.status != 200:
                    raise VerifierUnavailable(retry_after=VERIFIER_RETRY_AFTER)
                return Verification.model_validate_json(await response.read())
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise VerifierUnavailable(retry_after=VERIFIER_RETRY_AFTER) from exc


def create_session(timeout_seconds: float) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=timeout_seconds),
        connector=aiohttp.TCPConnector(limit=100, keepalive_timeout=30),
        raise_for_status=False,
    )
