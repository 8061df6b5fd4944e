"""Moving stored webhook secrets to the newest encryption key (`mandate-vault keys reencrypt`).

Safe while the api and the worker run: each batch is read `FOR UPDATE` and rewritten in its own
transaction, a secret is only ever replaced by the same secret under the newest key, and every
running process can open both (it has all the keys). Running it twice changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from mandate_vault_api.database import Database
from mandate_vault_shared.db.schema import webhook_subscriptions
from mandate_vault_shared.webhooks import SecretBox

_BATCH: Final = 500
_COLUMNS: Final = ("secret_ciphertext", "previous_secret_ciphertext")


@dataclass
class Reencrypted:
    checked: int = 0  # ciphertexts looked at
    rewritten: int = 0  # moved to the newest key


async def reencrypt_secrets(db: Database, box: SecretBox) -> Reencrypted:
    outcome = Reencrypted()
    after = ""
    while True:
        async with db.transaction() as conn:
            ids = await _reencrypt_batch(conn, box, after, outcome)
        if len(ids) < _BATCH:
            return outcome
        after = ids[-1]


async def _reencrypt_batch(
    conn: AsyncConnection, box: SecretBox, after: str, outcome: Reencrypted
) -> list[str]:
    table = webhook_subscriptions
    rows = (
        await conn.execute(
            select(table.c.id, *(table.c[name] for name in _COLUMNS))
            .where(table.c.id > after)
            .order_by(table.c.id)
            .limit(_BATCH)
            .with_for_update()
        )
    ).all()
    for row in rows:
        changes = {}
        for name in _COLUMNS:
            ciphertext = getattr(row, name)
            if ciphertext is None:
                continue
            outcome.checked += 1
            if not box.sealed_with_newest(ciphertext):
                changes[name] = box.reseal(ciphertext)
        if changes:
            await conn.execute(update(table).where(table.c.id == row.id).values(**changes))
            outcome.rewritten += len(changes)
    return [row.id for row in rows]


async def count_stale(db: Database, box: SecretBox) -> tuple[int, int]:
    """(ciphertexts, how many the newest key alone cannot open)."""
    async with db.read() as conn:
        rows = (
            await conn.execute(select(*(webhook_subscriptions.c[name] for name in _COLUMNS)))
        ).all()
    values = [value for row in rows for value in row if value is not None]
    return len(values), sum(not box.sealed_with_newest(value) for value in values)
