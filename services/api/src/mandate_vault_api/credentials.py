"""Credentials: password hashing, access tokens, refresh tokens and API keys.

Passwords use Argon2id (argon2-cffi). Refresh tokens (``mvr_``) and API keys (``mvk_``) are
32 random bytes, shown once and stored as SHA-256 digests: they are high-entropy, so a fast hash
is enough and lookups stay a primary-key read. Access tokens are short-lived HS256 JWTs bound to
a session; a refresh token is opaque and can never pass as one.
"""

from __future__ import annotations

import asyncio
import hashlib
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


@dataclass(frozen=True)
class AccessClaims:
    user_id: str
    tenant_id: str
    role: Role
    session_id: str


def issue_access_token(claims: AccessClaims, key: str, now: datetime, ttl: timedelta) -> str:
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
    return jwt.encode(payload, key, algorithm=_ALGORITHM)


def read_access_token(token: str, key: str, now: datetime) -> AccessClaims | None:
    """The token's claims, or None for anything that is not a valid access token of ours."""
    try:
        payload = jwt.decode(
            token,
            key,
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
