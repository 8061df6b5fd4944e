"""jwt-verifier: verifies mandate JWTs (JWT Verifiable Credentials) against trusted issuers.

``POST /api/v1/verify`` with ``{"jwt": "<compact JWS>", "allowed_issuers": [...] | null}``
answers 200 with ``{"status", "reason", "issuer", "subject", "key_id", "claims", "mandate"}``
for every verification outcome; 413 (shared error shape) when the token or body exceeds the
cap, 422 when the body is not that JSON. ``claims`` and ``mandate`` are set only when the
signature verified against a trusted key (VALID, EXPIRED, NOT_YET_VALID).

Statuses (`statuses.VerificationStatus`, stable strings):

    VALID                   signature, schema and times all good
    EXPIRED                 exp passed (beyond the leeway)
    NOT_YET_VALID           nbf, or iat, in the future beyond the leeway
    MISSING_REQUIRED_FIELD  iss/sub/iat/exp/vc or a vc.credentialSubject field absent
    CLAIMS_INVALID          a claim with a bad type or value (amount, currency, scope, type...)
    SIG_INVALID             signature empty, malformed or not made by the selected key
    ISSUER_UNKNOWN          iss not in the truststore, or not in the tenant's allowed_issuers
    ISSUER_UNREACHABLE      the did:web document could not be fetched or used
    KEY_UNKNOWN             kid names no key of the issuer (or no kid and several keys)
    ALG_NOT_ALLOWED         none/HS*/unsupported alg, or not allowed for the issuer or key
    HEADER_NOT_ALLOWED      jku, x5u, jwk, x5c, crit or b64 header present
    INVALID_FORMAT          not a compact JWS: segments, base64url, JSON, JWE, nested JWT
    TOKEN_TOO_LARGE         over VERIFIER_MAX_TOKEN_BYTES (HTTP 413)

Settings (besides the shared ENVIRONMENT, LOG_*, OTEL_*, SENTRY_* ones):

    VERIFIER_HOST / VERIFIER_PORT          127.0.0.1 / 8001
    VERIFIER_TRUSTSTORE_PATH               unset; JSON truststore file (see `truststore`)
    VERIFIER_TRUSTSTORE_JSON               unset; the same JSON inline (not with _PATH)
    VERIFIER_MAX_TOKEN_BYTES               16384; body cap is this + 16 KiB
    VERIFIER_LEEWAY_SECONDS                30; clock skew for exp/nbf/iat, 0..60
    VERIFIER_DID_WEB_TIMEOUT_SECONDS       5; whole did.json request
    VERIFIER_DID_WEB_MAX_BYTES             65536; did.json size cap
    VERIFIER_DID_WEB_CACHE_TTL_SECONDS     300; keys of a resolved document are kept this long
    VERIFIER_DID_WEB_FAILURE_TTL_SECONDS   30; a failed resolution is remembered this long
    VERIFIER_DID_WEB_CA_FILE               unset (system CAs); else the only CAs trusted
    VERIFIER_SSRF_ALLOWLIST                empty; comma-separated hosts/IPs/CIDRs to allow
"""
