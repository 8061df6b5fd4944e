"""Mandates: storing a verification outcome, reading, revoking, re-verifying, expiring.

Lifecycle (``status``): a mandate whose token verified is ACTIVE, otherwise REJECTED (stored
with the verifier's status and reason, never active). ACTIVE becomes REVOKED on request or
EXPIRED when ``expires_at`` passes (the periodic sweep). Re-verification can move ACTIVE to
REJECTED (e.g. the issuer's key was withdrawn) and REJECTED to ACTIVE (the issuer became
trusted); it never revives a REVOKED or EXPIRED mandate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Row, and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from mandate_vault_api.credentials import new_id
from mandate_vault_api.verifier_client import Verification
from mandate_vault_shared.db.schema import MAX_IDENTIFIER_LENGTH, mandates
from mandate_vault_shared.errors import Conflict, NotFound


class MandateStatus(StrEnum):
    ACTIVE = "ACTIVE"
    REJECTED = "REJECTED"
    REVOKED = "REVOKED"
    EXPIRED = "EXPIRED"


@dataclass(frozen=True)
class MandateFilters:
    status: MandateStatus | None = None
    issuer: str | None = None
    subject: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None


def _identifier(value: str | None) -> str | None:
    """An identifier read from the token, or None when it is too long to store and index
    (only possible on a rejected token: the verifier refuses longer iss/sub; vc_jwt keeps all)."""
    return value if value is not None and len(value) <= MAX_IDENTIFIER_LENGTH else None


def _verification_values(verification: Verification) -> dict[str, Any]:
    terms = verification.mandate
    return {
        "verification_status": verification.status,
        "verification_reason": (verification.reason or "")[:500] or None,
        "issuer": _identifier(verification.issuer),
        "subject": _identifier(verification.subject),
        "key_id": _identifier(verification.key_id),
        "scope": terms.scope if terms else None,
        "amount_limit": terms.amount_limit if terms else None,
        "currency": terms.currency if terms else None,
        "expires_at": terms.expires_at if terms else None,
    }


def new_mandate(
    verification: Verification, token: str, tenant_id: str, created_by: str, now: datetime
) -> dict[str, Any]:
    status = MandateStatus.ACTIVE if verification.valid else MandateStatus.REJECTED
    return {
        "id": new_id(),
        "tenant_id": tenant_id,
        "status": status.value,
        "vc_jwt": token,
        "created_by": created_by,
        "created_at": now,
        "updated_at": now,
        "verified_at": now,
        "revoked_at": None,
        "version": 1,
        **_verification_values(verification),
    }


async def insert_mandate(conn: AsyncConnection, values: dict[str, Any]) -> None:
    await conn.execute(mandates.insert().values(**values))


async def get_mandate(conn: AsyncConnection, tenant_id: str, mandate_id: str) -> Row[Any]:
    row = (
        await conn.execute(
            select(mandates).where(mandates.c.id == mandate_id, mandates.c.tenant_id == tenant_id)
        )
    ).one_or_none()
    if row is None:
        raise NotFound("Mandate not found.")
    return row


async def list_mandates(
    conn: AsyncConnection,
    tenant_id: str,
    filters: MandateFilters,
    after: tuple[datetime, str] | None,
    limit: int,
) -> Sequence[Row[Any]]:
    """Newest first; `after` is the (created_at, id) of the last row of the previous page."""
    query = select(mandates).where(mandates.c.tenant_id == tenant_id)
    if filters.status is not None:
        query = query.where(mandates.c.status == filters.status.value)
    if filters.issuer is not None:
        query = query.where(mandates.c.issuer == filters.issuer)
    if filters.subject is not None:
        query = query.where(mandates.c.subject == filters.subject)
    if filters.created_after is not None:
        query = query.where(mandates.c.created_at >= filters.created_after)
    if filters.created_before is not None:
        query = query.where(mandates.c.created_at < filters.created_before)
    if after is not None:
        created_at, last_id = after
        query = query.where(
            or_(
                mandates.c.created_at < created_at,
                and_(mandates.c.created_at == created_at, mandates.c.id < last_id),
            )
        )
    query = query.order_by(mandates.c.created_at.desc(), mandates.c.id.desc()).limit(limit)
    return (await conn.execute(query)).all()


async def revoke_mandate(
    conn: AsyncConnection, tenant_id: str, mandate_id: str, now: datetime
) -> tuple[Row[Any], bool]:
    """The mandate after revocation, and whether this call changed it (revoking is idempotent)."""
    row = await _locked(conn, tenant_id, mandate_id)
    if row.status == MandateStatus.REVOKED:
        return row, False
    if row.status == MandateStatus.EXPIRED:
        raise Conflict("An expired mandate cannot be revoked.", code="mandate_expired")
    await conn.execute(
        update(mandates)
        .where(mandates.c.id == mandate_id)
        .values(
            status=MandateStatus.REVOKED.value,
            revoked_at=now,
            updated_at=now,
            version=mandates.c.version + 1,
        )
    )
    return await get_mandate(conn, tenant_id, mandate_id), True


async def apply_verification(
    conn: AsyncConnection,
    tenant_id: str,
    mandate_id: str,
    verification: Verification,
    now: datetime,
) -> tuple[Row[Any], str]:
    """Store a re-verification; returns the mandate and its status before the change."""
    row = await _locked(conn, tenant_id, mandate_id)
    status = row.status
    if status in (MandateStatus.ACTIVE, MandateStatus.REJECTED):
        status = (MandateStatus.ACTIVE if verification.valid else MandateStatus.REJECTED).value
    await conn.execute(
        update(mandates)
        .where(mandates.c.id == mandate_id)
        .values(
            status=status,
            verified_at=now,
            updated_at=now,
            version=mandates.c.version + 1,
            **_verification_values(verification),
        )
    )
    return await get_mandate(conn, tenant_id, mandate_id), row.status


async def _locked(conn: AsyncConnection, tenant_id: str, mandate_id: str) -> Row[Any]:
    row = (
        await conn.execute(
            select(mandates)
            .where(mandates.c.id == mandate_id, mandates.c.tenant_id == tenant_id)
            .with_for_update()
        )
    ).one_or_none()
    if row is None:
        raise NotFound("Mandate not found.")
    return row


async def expire_due(conn: AsyncConnection, now: datetime, batch: int = 500) -> list[Row[Any]]:
    """Mark ACTIVE mandates past `expires_at` EXPIRED; returns them as they are now."""
    due = (
        select(mandates.c.id)
        .where(mandates.c.status == MandateStatus.ACTIVE.value, mandates.c.expires_at <= now)
        .limit(batch)
        .scalar_subquery()
    )
    result = await conn.execute(
        update(mandates)
        .where(mandates.c.id.in_(due), mandates.c.status == MandateStatus.ACTIVE.value)
        .values(status=MandateStatus.EXPIRED.value, updated_at=now, version=mandates.c.version + 1)
        .returning(*mandates.c)
    )
    return list(result.all())
