"""The create transaction on both drivers: asyncpg directly (PostgreSQL) and SQLAlchemy (SQLite)."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from mandate_vault_api import directory, migrate
from mandate_vault_api import mandates as domain
from mandate_vault_api.creation import DUPLICATE_ERRORS
from mandate_vault_api.database import Database
from mandate_vault_api.fast_writes import _store_with_sqlalchemy, store_created
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


async def _subscribed_tenant(db: Database, tenant: str, now: datetime) -> dict[str, str]:
    """A tenant with three subscriptions; subscription id -> its event types, for matching."""
    box = SecretBox(DEV_ENCRYPTION_KEY)
    kinds = {}
    async with db.transaction() as conn:
        await directory.create_tenant(conn, tenant, tenant.title(), now)
        for events in (
            ["MandateCreated"],
            ["MandateCreated", "MandateRevoked"],
            ["MandateExpired"],
        ):
            values = {"url": "https://x.example/h", "event_types": [EventType(e) for e in events]}
            subscription, _ = await create_subscription(conn, box, tenant, values, now)
            kinds[subscription] = ",".join(events)
    return kinds


def _normalized(row: dict[str, object], tenant: str, mandate_id: str) -> dict[str, object]:
    """A row with what must differ between the two writes (ids, tenant) taken out."""
    text: dict[str, object] = {
        k: str(v).replace(tenant, "<tenant>").replace(mandate_id, "<id>") for k, v in row.items()
    }
    for key in ("id", "mandate_id", "event_id", "subscription_id"):
        text.pop(key, None)
    return text


async def test_both_write_paths_store_identical_rows(database_url: str) -> None:
    """The asyncpg statement (PostgreSQL) and the SQLAlchemy transaction (SQLite) are two
    implementations of one write: run both on PostgreSQL with the same input and compare every
    column of the mandate, outbox and idempotency rows they stored."""
    await asyncio.to_thread(migrate.upgrade, database_url)
    db = Database(create_engine(database_url))
    now = datetime.now(UTC)
    verification = Verification.model_validate(
        {
            "status": "VALID",
            "issuer": "did:web:bank.example",
            "subject": "did:example:c-1",
            "key_id": "key-1",
            "mandate": {
                "scope": "payments.recurring",
                "amount_limit": "250.00",
                "currency": "EUR",
                "expires_at": now.isoformat(),
            },
        }
    )
    stored: dict[str, tuple[list[dict[str, object]], ...]] = {}
    try:
        for tenant, write in (("fast", store_created), ("portable", _store_with_sqlalchemy)):
            kinds = await _subscribed_tenant(db, tenant, now)
            values = domain.new_mandate(verification, "header.payload.sig", tenant, "u-1", now)
            event, data = EventType.MANDATE_CREATED, mandate_event_data(values)
            assert await write(db, values, event, data, ("key-1", "fingerprint")) == 2
            rows = []
            async with db.read() as conn:
                for table in (mandates, outbox, idempotency_keys):
                    found = await conn.execute(select(table).where(table.c.tenant_id == tenant))
                    rows.append([dict(r._mapping) for r in found])
            for row in rows[1]:
                assert re.fullmatch(r"msg_[0-9a-f]{32}", str(row["event_id"]))
                row["subscription"] = kinds[str(row["subscription_id"])]
            stored[tenant] = tuple(
                sorted(
                    (_normalized(r, tenant, values["id"]) for r in table_rows),
                    key=lambda r: sorted(r.items()),
                )
                for table_rows in rows
            )
    finally:
        await db.close()
    assert stored["fast"] == stored["portable"]
    mandate_rows, outbox_rows, key_rows = stored["fast"]
    assert (len(mandate_rows), len(outbox_rows), len(key_rows)) == (1, 2, 1)
