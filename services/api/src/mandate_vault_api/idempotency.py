"""`Idempotency-Key` on create: a repeated key returns the first result.

The key is stored in the same transaction as the mandate it produced, so a key either points at
a stored mandate or does not exist. Reusing a key with a different request body is a 409.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from mandate_vault_shared.db.schema import idempotency_keys
from mandate_vault_shared.errors import Conflict

MAX_KEY_LENGTH = 255


def request_fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def find_previous(
    conn: AsyncConnection, tenant_id: str, key: str, fingerprint: str
) -> str | None:
    """The mandate id a previous identical request produced, if any."""
    row = (
        await conn.execute(
            select(idempotency_keys.c.request_hash, idempotency_keys.c.mandate_id).where(
                idempotency_keys.c.tenant_id == tenant_id, idempotency_keys.c.key == key
            )
        )
    ).one_or_none()
    if row is None:
        return None
    if row.request_hash != fingerprint:
        msg = "This Idempotency-Key was already used with a different request."
        raise Conflict(msg, code="idempotency_key_reused")
    return str(row.mandate_id)


async def remember(
    conn: AsyncConnection,
    tenant_id: str,
    key: str,
    fingerprint: str,
    mandate_id: str,
    now: datetime,
) -> None:
    await conn.execute(
        idempotency_keys.insert().values(
            tenant_id=tenant_id,
            key=key,
            request_hash=fingerprint,
            mandate_id=mandate_id,
            created_at=now,
        )
    )
