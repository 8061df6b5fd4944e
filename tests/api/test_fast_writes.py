"""The create transaction on both drivers: asyncpg directly (PostgreSQL) and SQLAlchemy (SQLite)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from mandate_vault_api import directory, migrate
from mandate_vault_api import mandates as domain
from mandate_vault_api.creation import DUPLICATE_ERRORS
from mandate_vault_api.database import Database
from mandate_vault_api.fast_writes import store_created
from mandate_vault_api.schemas import mandate_event_data
from mandate_vault_api.verifier_client import Verification
from mandate_vault_api.webhooks import create_subscription
from mandate_vault_shared.db.engine import create_engine
from mandate_vault_shared.db.schema import idempotency_keys, mandates, outbox
from mandate_vault_shared.messages import EventType
from mandate_vault_shared.webhooks import DEV_ENCRYPTION_KEY, SecretBox


@pytest.fixture(params=["postgresql", "sqlite"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/fast.db"
    return str(request.getfixturevalue("database_url"))


async def count(db: Database, table: object) -> int:
    async with db.read() as conn:
        return int(await conn.scalar(select(func.count()).select_from(table)) or 0)  # type: ignore[arg-type]


async def test_mandate_outbox_rows_and_idempotency_key_in_one_transaction(url: str) -> None:
    await asyncio.to_thread(migrate.upgrade, url)
    db = Database(create_engine(url))
    now = datetime.now(UTC)
    try:
        async with db.transaction() as conn:
            await directory.create_tenant(conn, "acme", "Acme", now)
            box = SecretBox(DEV_ENCRYPTION_KEY)
            for events in (
                ["MandateCreated"],
                ["MandateCreated", "MandateRevoked"],
                ["MandateExpired"],
            ):
                await create_subscription(
                    conn,
                    box,
                    "acme",
                    {"url": "https://x.example/h", "event_types": [EventType(e) for e in events]},
                    now,
                )
        verification = Verification(status="VALID", issuer="did:web:bank.example", subject="s")
        values = domain.new_mandate(verification, "token", "acme", "user-1", now)
        queued = await store_created(
            db, values, EventType.MANDATE_CREATED, mandate_event_data(values), ("key-1", "fp")
        )
        assert queued == 2  # the two subscriptions that want MandateCreated
        assert (
            await count(db, mandates),
            await count(db, outbox),
            await count(db, idempotency_keys),
        ) == (1, 2, 1)
        async with db.read() as conn:
            rows = (await conn.execute(select(outbox))).all()
        assert {row.event_type for row in rows} == {"MandateCreated"}
        assert all(row.published_at is None and row.tenant_id == "acme" for row in rows)
        assert len({row.event_id for row in rows}) == 2

        again = domain.new_mandate(verification, "token", "acme", "user-1", now)
        with pytest.raises(DUPLICATE_ERRORS):
            await store_created(
                db, again, EventType.MANDATE_CREATED, mandate_event_data(again), ("key-1", "fp")
            )
        # Nothing of the failed transaction remains.
        assert (
            await count(db, mandates),
            await count(db, outbox),
            await count(db, idempotency_keys),
        ) == (1, 2, 1)
    finally:
        await db.close()
