"""Mandate JWT verification, start to finish, with no web framework in sight.

Order matters: everything that can be decided from the token alone (size, format, algorithm,
forbidden headers), then the issuer against the tenant's allow-list and the truststore, then
the algorithm against the issuer's allow-list, and only then a key lookup, which for a did:web
issuer may fetch its document. A token refused before the key lookup never causes a fetch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from mandate_vault_verifier.claims import Mandate, MandateClaims, mandate_of, validate_claims
from mandate_vault_verifier.errors import Rejection
from mandate_vault_verifier.jws import ParsedToken, parse_compact
from mandate_vault_verifier.keys import TrustedKey
from mandate_vault_verifier.resolver import IssuerUnreachable
from mandate_vault_verifier.statuses import VerificationStatus as Status
from mandate_vault_verifier.truststore import Issuer, Truststore

UNTRUSTED_ISSUER: Final = "untrusted"
MAX_LEEWAY_SECONDS: Final = 60.0


class KeySource(Protocol):
    async def keys(self, issuer: Issuer) -> Mapping[str, TrustedKey]: ...


@dataclass(frozen=True, slots=True)
class VerificationResult:
    status: Status
    reason: str | None = None
    issuer: str | None = None
    subject: str | None = None
    key_id: str | None = None
    claims: dict[str, Any] | None = None
    mandate: Mandate | None = None
    issuer_label: str = UNTRUSTED_ISSUER  # bounded: a truststore issuer id or "untrusted"

    def to_json(self, *, include_claims: bool = True) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "reason": self.reason,
            "issuer": self.issuer,
            "subject": self.subject,
            "key_id": self.key_id,
            "claims": self.claims if include_claims else None,
            "mandate": self.mandate.to_json() if self.mandate is not None else None,
        }


@dataclass(slots=True)
class _Attempt:
    """What is known so far about one token, reported whatever the outcome."""

    issuer: str | None = None
    subject: str | None = None
    key_id: str | None = None
    issuer_label: str = UNTRUSTED_ISSUER

    def result(self, status: Status, reason: str | None, **verified: Any) -> VerificationResult:
        return VerificationResult(
            status=status,
            reason=reason,
            issuer=self.issuer,
            subject=self.subject,
            key_id=self.key_id,
            issuer_label=self.issuer_label,
            **verified,
        )


class Verifier:
    def __init__(
        self,
        truststore: Truststore,
        did_web: KeySource,
        *,
        leeway_seconds: float,
        max_token_bytes: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 0 <= leeway_seconds <= MAX_LEEWAY_SECONDS:
            msg = f"leeway must be between 0 and {MAX_LEEWAY_SECONDS:.0f} seconds"
            raise ValueError(msg)
        self.truststore = truststore
        self._did_web = did_web
        self._leeway = leeway_seconds
        self._max_token_bytes = max_token_bytes
        self._clock = clock

    async def verify(
        self, token: str, allowed_issuers: Collection[str] | None = None
    ) -> VerificationResult:
        attempt = _Attempt()
        try:
            parsed = parse_compact(token, self._max_token_bytes)
            _observe(attempt, parsed.payload)
            issuer = self._issuer(parsed, allowed_issuers, attempt)
            key = await self._key(issuer, parsed)
            attempt.key_id = key.kid
            _check_signature(parsed, key)
            claims = validate_claims(parsed.payload)
        except Rejection as rejection:
            return attempt.result(rejection.status, rejection.reason)
        status, reason = self._check_times(claims)
        return attempt.result(status, reason, claims=parsed.payload, mandate=mandate_of(claims))

    def _issuer(
        self, parsed: ParsedToken, allowed: Collection[str] | None, attempt: _Attempt
    ) -> Issuer:
        iss = parsed.payload.get("iss")
        if iss is None:
            raise Rejection(Status.MISSING_REQUIRED_FIELD, "Missing required claim(s): iss.")
        if not isinstance(iss, str):
            raise Rejection(Status.INVALID_FORMAT, "The iss claim must be a string.")
        issuer = self.truststore.get(iss)
        if issuer is not None:
            attempt.issuer_label = issuer.id
        if allowed is not None and iss not in allowed:
            raise Rejection(Status.ISSUER_UNKNOWN, "The issuer is not allowed for this tenant.")
        if issuer is None:
            raise Rejection(Status.ISSUER_UNKNOWN, "The issuer is not in the truststore.")
        if parsed.alg not in issuer.algorithms:
            reason = f"The issuer does not use {parsed.alg}."
            raise Rejection(Status.ALG_NOT_ALLOWED, reason)
        return issuer

    async def _key(self, issuer: Issuer, parsed: ParsedToken) -> TrustedKey:
        if issuer.resolvable:
            try:
                keys = await self._did_web.keys(issuer)
            except IssuerUnreachable as exc:
                raise Rejection(Status.ISSUER_UNREACHABLE, str(exc)) from None
        else:
            keys = issuer.keys
        key = _select(keys, parsed.kid)
        if key is None:
            raise Rejection(Status.KEY_UNKNOWN, "No key of the issuer matches the kid.")
        if parsed.alg not in key.by_algorithm:
            raise Rejection(Status.ALG_NOT_ALLOWED, f"The key cannot be used with {parsed.alg}.")
        return key

    def _check_times(self, claims: MandateClaims) -> tuple[Status, str | None]:
        now = self._clock()
        if now >= claims.exp + self._leeway:
            return Status.EXPIRED, "The mandate has expired (exp)."
        if claims.nbf is not None and claims.nbf > now + self._leeway:
            return Status.NOT_YET_VALID, "The mandate is not valid yet (nbf)."
        if claims.iat > now + self._leeway:
            return Status.NOT_YET_VALID, "The mandate was issued in the future (iat)."
        return Status.VALID, None


def _observe(attempt: _Attempt, payload: Mapping[str, Any]) -> None:
    iss, sub = payload.get("iss"), payload.get("sub")
    attempt.issuer = iss if isinstance(iss, str) else None
    attempt.subject = sub if isinstance(sub, str) else None


def _select(keys: Mapping[str, TrustedKey], kid: str | None) -> TrustedKey | None:
    if kid is not None:
        return keys.get(kid)
    distinct = {id(key): key for key in keys.values()}
    # Without a kid, only an issuer with a single key is unambiguous.
    return next(iter(distinct.values())) if len(distinct) == 1 else None


def _check_signature(parsed: ParsedToken, key: TrustedKey) -> None:
    """Verify with the key object bound to this algorithm (never one the token describes)."""
    jwk = key.by_algorithm[parsed.alg]
    if not jwk.Algorithm.verify(parsed.signing_input, jwk.key, parsed.signature):
        raise Rejection(Status.SIG_INVALID, "The signature does not verify.")
