"""Credentials: password hashing, access tokens, refresh tokens and API keys.

Passwords use Argon2id (argon2-cffi). Refresh tokens (``mvr_``) and API keys (``mvk_``) are
32 random bytes, shown once and stored as SHA-256 digests: they are high-entropy, so a fast hash
is enough and lookups stay a primary-key read. Access tokens are short-lived HS256 JWTs bound to
a session; a refresh token is opaque and can never pass as one.

Access-token keys rotate without downtime: `SigningKeys` holds several, each with a `kid`; the
first signs (its `kid` goes in the token's header) and every one verifies, so tokens signed with
an older key stay valid until they expire.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from mandate_vault_api.roles import Role

API_KEY_PREFIX: Final = "mvk_"
REFRESH_PREFIX: Final = "mvr_"
_ALGORITHM: Final = "HS256"
_ISSUER: Final = "mandate-vault"
_AUDIENCE: Final = "mandate-vault-api"
_TOKEN_TYPE: Final = "access"  # noqa: S105 - a claim value, not a secret

_hasher = PasswordHasher()
# Verified against when the e-mail is unknown, so both paths cost the same.
_DUMMY_HASH: Final = _hasher.hash("not-a-real-password")


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


async def verify_password(password_hash: str | None, password: str) -> bool:
    def check() -> bool:
        try:
            return _hasher.verify(password_hash or _DUMMY_HASH, password) and bool(password_hash)
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(check)


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def new_refresh_token() -> str:
    return REFRESH_PREFIX + secrets.token_urlsafe(32)


def new_id() -> str:
    return str(uuid.uuid4())


_KID = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@dataclass(frozen=True)
class SigningKeys:
    """(kid, secret) pairs; the first signs, all verify."""

    keys: tuple[tuple[str, str], ...]

    @classmethod
    def parse(cls, text: str) -> SigningKeys:
        """`kid:secret,kid:secret` (newest first); a bare secret gets a kid from its digest."""
        keys = []
        for entry in (part.strip() for part in text.split(",")):
            if not entry:
                continue
            kid, colon, secret = entry.partition(":")
            if not colon or not _KID.fullmatch(kid) or not secret:
                kid, secret = digest(entry)[:8], entry
            keys.append((kid, secret))
        if not keys:
            msg = "no signing key given"
            raise ValueError(msg)
        if len({kid for kid, _ in keys}) != len(keys):
            msg = "two signing keys share a kid"
            raise ValueError(msg)
        return cls(tuple(keys))

    @property
    def current(self) -> tuple[str, str]:
        return self.keys[0]

    def candidates(self, kid: object) -> list[str]:
        """Secrets that may have signed a token with this `kid` (all, for tokens without one)."""
        if kid is None:
            return [secret for _, secret in self.keys]
        return [secret for known, secret in self.keys if known == kid]


def new_signing_key(kid: str | None = None) -> str:
    """A fresh `kid:secret` entry for API_TOKEN_SIGNING_KEY."""
    return f"{kid or 'k' + secrets.token_hex(4)}:{secrets.token_urlsafe(48)}"


@dataclass(frozen=True)
class AccessClaims:
    user_id: str
    tenant_id: str
    role: Role
    session_id: str


def issue_access_token(
    claims: AccessClaims, keys: SigningKeys, now: datetime, ttl: timedelta
) -> str:
    payload = {
        "iss": _ISSUER,
        "aud": _AUDIENCE,
        "typ": _TOKEN_TYPE,
        "sub": claims.user_id,
        "tid": claims.tenant_id,
        "role": claims.role.value,
        "sid": claims.session_id,
        "iat": int(now.timestamp()),
        "exp": int((now + ttl).timestamp()),
        "jti": secrets.token_hex(8),
    }
    kid, secret = keys.current
    return jwt.encode(payload, secret, algorithm=_ALGORITHM, headers={"kid": kid})


def read_access_token(token: str, keys: SigningKeys, now: datetime) -> AccessClaims | None:
    """The token's claims, or None for anything that is not a valid access token of ours."""
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.PyJWTError:
        return None
    for secret in keys.candidates(kid):
        claims = _decode(token, secret, now)
        if claims is not None:
            return claims
    return None


def _decode(token: str, secret: str, now: datetime) -> AccessClaims | None:
    try:
        payload = jwt.decode(
            token,
            secret,
            algorithms=[_ALGORITHM],
            audience=_AUDIENCE,
            issuer=_ISSUER,
            # Expiry is checked below against the app's clock (injectable in tests).
            options={
                "require": ["exp", "iat", "sub", "sid", "tid", "role", "typ"],
                "verify_exp": False,
                "verify_iat": False,
            },
        )
    except jwt.PyJWTError:
        return None
    if payload.get("typ") != _TOKEN_TYPE or payload["exp"] <= now.timestamp():
        return None
    try:
        role = Role(payload["role"])
    except ValueError:
        return None
    return AccessClaims(payload["sub"], payload["tid"], role, payload["sid"])
