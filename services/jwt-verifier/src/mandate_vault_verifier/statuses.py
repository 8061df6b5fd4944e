"""Verification outcomes: stable strings, the `status` label of `jwt_verifications_total` and
the `verification_status` the api stores with a mandate. Never rename a member's value."""

from __future__ import annotations

from enum import StrEnum


class VerificationStatus(StrEnum):
    # Signature verified against a trusted key; claims and mandate are reported.
    VALID = "VALID"
    EXPIRED = "EXPIRED"  # exp passed (beyond the leeway)
    NOT_YET_VALID = "NOT_YET_VALID"  # nbf or iat in the future (beyond the leeway)
    # Signature verified, credential rejected; claims are not reported.
    MISSING_REQUIRED_FIELD = "MISSING_REQUIRED_FIELD"  # iss/sub/iat/exp/vc or a vc field absent
    CLAIMS_INVALID = "CLAIMS_INVALID"  # a claim present with a bad type or value
    # Rejected before or at signature verification; issuer/subject, if any, are untrusted.
    SIG_INVALID = "SIG_INVALID"  # bad, empty or malformed signature for the selected key
    ISSUER_UNKNOWN = "ISSUER_UNKNOWN"  # iss not in the truststore or the tenant's allow-list
    ISSUER_UNREACHABLE = "ISSUER_UNREACHABLE"  # did:web document could not be fetched or used
    KEY_UNKNOWN = "KEY_UNKNOWN"  # kid names no key of the issuer
    ALG_NOT_ALLOWED = "ALG_NOT_ALLOWED"  # none/HS*/unsupported, not allowed for issuer or key
    HEADER_NOT_ALLOWED = "HEADER_NOT_ALLOWED"  # jku, x5u, jwk, x5c, crit, b64
    INVALID_FORMAT = "INVALID_FORMAT"  # not a compact JWS: segments, base64url, JSON, JWE, nested
    TOKEN_TOO_LARGE = "TOKEN_TOO_LARGE"  # noqa: S105 - over the size cap (HTTP 413)

    @property
    def reports_claims(self) -> bool:
        """Whether a result with this status carries the (verified) claims and mandate."""
        return self in _REPORTS_CLAIMS


_REPORTS_CLAIMS = frozenset(
    {VerificationStatus.VALID, VerificationStatus.EXPIRED, VerificationStatus.NOT_YET_VALID}
)
