"""Login, refresh, logout, lockout, and turning credentials into a `Principal`.

Lockout: `threshold` failures within `window` lock the e-mail address for `duration` (never
permanently). Failures are tracked per e-mail *hash*, for unknown addresses too, so the answers
(401, or 429 with Retry-After while locked) never reveal whether an account exists.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Row, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from mandate_vault_api.cache import TtlCache
from mandate_vault_api.clock import Clock, as_utc
from mandate_vault_api.credentials import (
    AccessClaims,
    SigningKeys,
    digest,
    issue_access_token,
    new_id,
    new_refresh_token,
    read_access_token,
    verify_password,
)
from mandate_vault_api.database import Database, insert_ignoring_conflict
from mandate_vault_api.principal import Principal
from mandate_vault_api.revocation import SESSION, announce
from mandate_vault_api.roles import Role
from mandate_vault_shared.db.schema import api_keys, login_throttle, sessions, tenants, users
from mandate_vault_shared.errors import RateLimited, Unauthorized

INVALID_CREDENTIALS = "Invalid email or password."


class AuthResult(StrEnum):
    SUCCESS = "success"
    FAILED = "failed"
    LOCKED_OUT = "locked_out"


@dataclass(frozen=True)
class AuthPolicy:
    signing_keys: SigningKeys
    access_ttl: timedelta
    refresh_ttl: timedelta
    threshold: int
    window: timedelta
    lock_duration: timedelta


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    user_id: str
    tenant_id: str


@dataclass(frozen=True)
class LoginOutcome:
    """Decided inside the transaction, raised after it commits (a failure must be recorded)."""

    result: AuthResult
    tokens: TokenPair | None = None
    retry_after: int | None = None
    user_id: str | None = None
    tenant_id: str | None = None

    def tokens_or_raise(self) -> TokenPair:
        if self.result is AuthResult.LOCKED_OUT:
            raise AccountLocked(retry_after=self.retry_after)
        if self.tokens is None:
            raise Unauthorized(INVALID_CREDENTIALS, code="invalid_credentials")
        return self.tokens


class AccountLocked(RateLimited):
    error_code = "account_locked"
    default_detail = "Too many failed attempts; retry later."


def normalize_email(email: str) -> str:
    return email.strip().lower()


def _lock_remaining(throttle: Row[Any] | None, now: datetime) -> int | None:
    """Seconds left on the address's lock, or None when it is not locked."""
    if throttle is None or throttle.locked_until is None:
        return None
    left = math.ceil((as_utc(throttle.locked_until) - now).total_seconds())
    return max(left, 1) if as_utc(throttle.locked_until) > now else None


async def attempt_login(
    db: Database, email: str, password: str, policy: AuthPolicy, now: datetime
) -> LoginOutcome:
    """Check credentials and record the outcome under the address's throttle row lock.

    Argon2 takes tens of milliseconds: it runs with no connection held (on SQLite's single
    connection it would stall every other request), and the lock is re-checked afterwards.
    """
    email = normalize_email(email)
    email_hash = digest(email)
    async with db.read() as conn:
        throttle = (
            await conn.execute(
                select(login_throttle).where(login_throttle.c.email_hash == email_hash)
            )
        ).one_or_none()
        user = (await conn.execute(select(users).where(users.c.email == email))).one_or_none()
    locked = _lock_remaining(throttle, now)
    if locked is not None:
        return LoginOutcome(AuthResult.LOCKED_OUT, retry_after=locked)
    valid = await verify_password(user.password_hash if user else None, password)
    async with db.transaction() as conn:
        await insert_ignoring_conflict(
            conn, login_throttle, {"email_hash": email_hash, "failure_count": 0}
        )
        throttle = (
            await conn.execute(
                select(login_throttle)
                .where(login_throttle.c.email_hash == email_hash)
                .with_for_update()
            )
        ).one()
        locked = _lock_remaining(throttle, now)
        if locked is not None:  # a concurrent attempt locked it meanwhile
            return LoginOutcome(AuthResult.LOCKED_OUT, retry_after=locked)
        if user is None or not valid or not user.enabled:
            await _record_failure(conn, throttle, policy, now)
            return LoginOutcome(
                AuthResult.FAILED,
                user_id=user.id if user else None,
                tenant_id=user.tenant_id if user else None,
            )
        await conn.execute(
            update(login_throttle)
            .where(login_throttle.c.email_hash == email_hash)
            .values(failure_count=0, window_started_at=None, locked_until=None)
        )
        tokens = await _open_session(conn, user.id, user.tenant_id, Role(user.role), policy, now)
    return LoginOutcome(AuthResult.SUCCESS, tokens, user_id=user.id, tenant_id=user.tenant_id)


async def _record_failure(
    conn: AsyncConnection, throttle: Row[Any], policy: AuthPolicy, now: datetime
) -> None:
    started = as_utc(throttle.window_started_at) if throttle.window_started_at else None
    in_window = started is not None and now - started < policy.window
    count = throttle.failure_count + 1 if in_window else 1
    values: dict[str, object] = {
        "failure_count": count,
        "window_started_at": started if in_window else now,
        "locked_until": None,
    }
    if count >= policy.threshold:
        values = {
            "failure_count": 0,
            "window_started_at": None,
            "locked_until": now + policy.lock_duration,
        }
    await conn.execute(
        update(login_throttle)
        .where(login_throttle.c.email_hash == throttle.email_hash)
        .values(**values)
    )


async def _open_session(
    conn: AsyncConnection,
    user_id: str,
    tenant_id: str,
    role: Role,
    policy: AuthPolicy,
    now: datetime,
) -> TokenPair:
    session_id = new_id()
    refresh = new_refresh_token()
    await conn.execute(
        sessions.insert().values(
            id=session_id,
            user_id=user_id,
            refresh_hash=digest(refresh),
            created_at=now,
            expires_at=now + policy.refresh_ttl,
        )
    )
    access = issue_access_token(
        AccessClaims(user_id, tenant_id, role, session_id),
        policy.signing_keys,
        now,
        policy.access_ttl,
    )
    return TokenPair(access, refresh, int(policy.access_ttl.total_seconds()), user_id, tenant_id)


async def refresh(
    conn: AsyncConnection, refresh_token: str, policy: AuthPolicy, now: datetime
) -> tuple[TokenPair, str]:
    """Rotate: the presented refresh token's session is revoked (returned: its id, announced
    to every replica) and a new pair issued."""
    row = (
        await conn.execute(
            select(sessions, users.c.tenant_id, users.c.role, users.c.enabled)
            .join(users, users.c.id == sessions.c.user_id)
            .where(sessions.c.refresh_hash == digest(refresh_token))
            .with_for_update(of=sessions)
        )
    ).one_or_none()
    if (
        row is None
        or row.revoked_at is not None
        or as_utc(row.expires_at) <= now
        or not row.enabled
    ):
        raise Unauthorized("The refresh token is invalid or expired.", code="invalid_token")
    await conn.execute(update(sessions).where(sessions.c.id == row.id).values(revoked_at=now))
    await announce(conn, SESSION, row.id)
    pair = await _open_session(conn, row.user_id, row.tenant_id, Role(row.role), policy, now)
    return pair, row.id


async def logout(conn: AsyncConnection, session_id: str, now: datetime) -> None:
    await conn.execute(
        update(sessions)
        .where(sessions.c.id == session_id, sessions.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    await announce(conn, SESSION, session_id)


class Authenticator:
    """Turns a bearer token or an API key into a `Principal`.

    The token's signature and expiry are checked on every request; what the database says about
    its session (revoked? user disabled? current role and tenant) and about API keys is cached
    for a few seconds (`TtlCache`) and dropped on every replica when a logout, a user change or a
    key revocation commits (see `revocation`).
    """

    def __init__(
        self, db: Database, policy: AuthPolicy, clock: Clock, cache_seconds: float
    ) -> None:
        self._db = db
        self._policy = policy
        self._clock = clock
        self._cache: TtlCache[Principal | None] = TtlCache(cache_seconds)

    def forget_all(self) -> None:
        self._cache.clear()

    def forget_api_key(self, key_hash: str) -> None:
        self._cache.forget(("api_key", key_hash))

    def forget_session(self, session_id: str) -> None:
        self._cache.forget(("session", session_id))

    def forget_user(self, user_id: str) -> None:
        """Every cached session of the user (their role or status changed)."""
        self._cache.forget_where(lambda p: p is not None and p.kind == "user" and p.id == user_id)

    async def from_bearer(self, token: str) -> Principal:
        claims = read_access_token(token, self._policy.signing_keys, self._clock())
        if claims is None:
            raise Unauthorized("The access token is invalid or expired.", code="invalid_token")

        async def load() -> Principal | None:
            async with self._db.read() as conn:
                return await _session_principal(conn, claims)

        principal = await self._cache.get_or_load(("session", claims.session_id), load)
        if principal is None or principal.id != claims.user_id:
            raise Unauthorized("The access token is invalid or expired.", code="invalid_token")
        return principal

    async def from_api_key(self, key: str) -> Principal:
        key_hash = digest(key)

        async def load() -> Principal | None:
            async with self._db.read() as conn:
                return await _api_key_principal(conn, key_hash)

        principal = await self._cache.get_or_load(("api_key", key_hash), load)
        if principal is None:
            raise Unauthorized("The API key is invalid.", code="invalid_api_key")
        return principal


async def _session_principal(conn: AsyncConnection, claims: AccessClaims) -> Principal | None:
    row = (
        await conn.execute(
            select(sessions.c.revoked_at, users.c.enabled, users.c.role, users.c.tenant_id)
            .join(users, users.c.id == sessions.c.user_id)
            .where(sessions.c.id == claims.session_id, sessions.c.user_id == claims.user_id)
        )
    ).one_or_none()
    if row is None or row.revoked_at is not None or not row.enabled:
        return None
    # Role and tenant come from the database: a demotion takes effect within the cache TTL.
    return Principal("user", claims.user_id, row.tenant_id, Role(row.role), claims.session_id)


async def _api_key_principal(conn: AsyncConnection, key_hash: str) -> Principal | None:
    row = (
        await conn.execute(
            select(api_keys.c.id, api_keys.c.tenant_id, api_keys.c.role, api_keys.c.revoked_at)
            .join(tenants, tenants.c.id == api_keys.c.tenant_id)
            .where(api_keys.c.key_hash == key_hash, tenants.c.enabled.is_(True))
        )
    ).one_or_none()
    if row is None or row.revoked_at is not None:
        return None
    return Principal("api_key", row.id, row.tenant_id, Role(row.role))
