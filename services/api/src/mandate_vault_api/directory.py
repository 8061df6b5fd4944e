"""Tenants, users, API keys and trusted issuers: the tenancy directory."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from mandate_vault_api.auth import normalize_email
from mandate_vault_api.credentials import digest, hash_password, new_api_key, new_id
from mandate_vault_api.principal import Principal
from mandate_vault_api.roles import Role, can_grant
from mandate_vault_shared.db.schema import api_keys, tenants, trusted_issuers, users
from mandate_vault_shared.errors import Conflict, Forbidden, NotFound

API_KEY_DISPLAY_PREFIX = 12


# --- tenants ---
async def create_tenant(conn: AsyncConnection, tenant_id: str, name: str, now: datetime) -> None:
    try:
        async with conn.begin_nested():
            await conn.execute(
                tenants.insert().values(id=tenant_id, name=name, enabled=True, created_at=now)
            )
    except IntegrityError as exc:
        raise Conflict("A tenant with this id exists.", code="tenant_exists") from exc


async def get_tenant(conn: AsyncConnection, tenant_id: str) -> Row[Any]:
    row = (await conn.execute(select(tenants).where(tenants.c.id == tenant_id))).one_or_none()
    if row is None:
        raise NotFound("Tenant not found.")
    return row


async def list_tenants(conn: AsyncConnection) -> Sequence[Row[Any]]:
    return (await conn.execute(select(tenants).order_by(tenants.c.id))).all()


# --- users ---
def check_grant(actor: Principal, role: Role) -> None:
    if not can_grant(actor.role, role):
        raise Forbidden("You cannot grant a role above your own.", code="role_too_high")


async def create_user(
    conn: AsyncConnection,
    tenant_id: str,
    email: str,
    password: str,
    role: Role,
    now: datetime,
) -> str:
    await get_tenant(conn, tenant_id)
    user_id = new_id()
    password_hash = await hash_password(password)
    try:
        async with conn.begin_nested():
            await conn.execute(
                users.insert().values(
                    id=user_id,
                    tenant_id=tenant_id,
                    email=normalize_email(email),
                    password_hash=password_hash,
                    role=role.value,
                    enabled=True,
                    created_at=now,
                    updated_at=now,
                )
            )
    except IntegrityError as exc:
        raise Conflict("A user with this e-mail exists.", code="user_exists") from exc
    return user_id


async def get_user(conn: AsyncConnection, tenant_id: str, user_id: str) -> Row[Any]:
    row = (
        await conn.execute(
            select(users).where(users.c.id == user_id, users.c.tenant_id == tenant_id)
        )
    ).one_or_none()
    if row is None:
        raise NotFound("User not found.")
    return row


async def list_users(conn: AsyncConnection, tenant_id: str) -> Sequence[Row[Any]]:
    query = select(users).where(users.c.tenant_id == tenant_id).order_by(users.c.email)
    return (await conn.execute(query)).all()


async def update_user(
    conn: AsyncConnection,
    actor: Principal,
    tenant_id: str,
    user_id: str,
    changes: dict[str, Any],
    now: datetime,
) -> Row[Any]:
    current = await get_user(conn, tenant_id, user_id)
    # Nobody edits an account above their own rank, nor promotes above it.
    check_grant(actor, Role(current.role))
    if "role" in changes:
        check_grant(actor, Role(changes["role"]))
    if changes:
        await conn.execute(
            update(users).where(users.c.id == user_id).values(**changes, updated_at=now)
        )
    return await get_user(conn, tenant_id, user_id)


# --- API keys ---
async def create_api_key(
    conn: AsyncConnection,
    tenant_id: str,
    name: str,
    role: Role,
    created_by: str,
    now: datetime,
) -> tuple[str, str]:
    """(key id, the key itself: shown once, stored only as a digest)."""
    await get_tenant(conn, tenant_id)
    key_id, key = new_id(), new_api_key()
    await conn.execute(
        api_keys.insert().values(
            id=key_id,
            tenant_id=tenant_id,
            name=name,
            role=role.value,
            prefix=key[:API_KEY_DISPLAY_PREFIX],
            key_hash=digest(key),
            created_by=created_by,
            created_at=now,
        )
    )
    return key_id, key


async def list_api_keys(conn: AsyncConnection, tenant_id: str) -> Sequence[Row[Any]]:
    query = (
        select(api_keys).where(api_keys.c.tenant_id == tenant_id).order_by(api_keys.c.created_at)
    )
    return (await conn.execute(query)).all()


async def revoke_api_key(
    conn: AsyncConnection, tenant_id: str, key_id: str, now: datetime
) -> Row[Any]:
    result = await conn.execute(
        update(api_keys)
        .where(api_keys.c.id == key_id, api_keys.c.tenant_id == tenant_id)
        .values(revoked_at=now)
        .returning(*api_keys.c)
    )
    row = result.one_or_none()
    if row is None:
        raise NotFound("API key not found.")
    return row


# --- trusted issuers ---
async def add_trusted_issuer(
    conn: AsyncConnection, tenant_id: str, issuer: str, now: datetime
) -> str:
    await get_tenant(conn, tenant_id)
    issuer_id = new_id()
    try:
        async with conn.begin_nested():
            await conn.execute(
                trusted_issuers.insert().values(
                    id=issuer_id, tenant_id=tenant_id, issuer=issuer, created_at=now
                )
            )
    except IntegrityError as exc:
        raise Conflict("This issuer is already trusted.", code="issuer_exists") from exc
    return issuer_id


async def list_trusted_issuers(conn: AsyncConnection, tenant_id: str) -> Sequence[Row[Any]]:
    query = (
        select(trusted_issuers)
        .where(trusted_issuers.c.tenant_id == tenant_id)
        .order_by(trusted_issuers.c.issuer)
    )
    return (await conn.execute(query)).all()


async def trusted_issuer_ids(conn: AsyncConnection, tenant_id: str) -> list[str]:
    query = select(trusted_issuers.c.issuer).where(trusted_issuers.c.tenant_id == tenant_id)
    return list((await conn.execute(query)).scalars())


async def remove_trusted_issuer(conn: AsyncConnection, tenant_id: str, issuer_id: str) -> None:
    result = await conn.execute(
        trusted_issuers.delete().where(
            trusted_issuers.c.id == issuer_id, trusted_issuers.c.tenant_id == tenant_id
        )
    )
    if result.rowcount == 0:
        raise NotFound("Trusted issuer not found.")
