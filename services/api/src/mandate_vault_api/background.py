"""Work one api replica does on behalf of all: the expiry sweep and the database-derived gauges.

Replicas elect that one with a PostgreSQL session-level advisory lock held on a dedicated
connection; if the holder dies, its connection closes, the lock is released and another replica
takes over within one election interval. A holder that vanishes without closing its connection
(node lost, network partition, process frozen) stops pinging; the server ends its session after
`_IDLE_SESSION_TIMEOUT` and the lock goes with it, rather than after TCP keepalives (hours).
SQLite (single process) is always its own leader.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Final

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

from mandate_vault_api.clock import Clock, as_utc
from mandate_vault_api.database import Database
from mandate_vault_api.mandates import MandateStatus, expire_due
from mandate_vault_api.metrics import GaugeSnapshot
from mandate_vault_api.schemas import mandate_event_data
from mandate_vault_api.webhooks import enqueue_event
from mandate_vault_shared.db.schema import mandates, outbox, tenants, users
from mandate_vault_shared.messages import EventType
from mandate_vault_shared.telemetry import get_logger

_LOCK_KEY: Final = 0x4D565F4C  # "MV_L"
# A dead leader's events wait at most this long for another replica's relay (plus the time its
# connection takes to close); the price is one cheap query per replica and second.
_ELECTION_INTERVAL_SECONDS: Final = 1.0
_IDLE_SESSION_TIMEOUT: Final = "10s"  # ten missed pings

log = get_logger(__name__)


class LeaderElection:
    def __init__(self, db: Database) -> None:
        # Its own connection, outside the request pool: holding the lock must not count
        # against `db_connections_active` or starve requests of a pooled connection.
        self._engine = create_async_engine(db.engine.url, poolclass=NullPool)
        self._conn: AsyncConnection | None = None
        self.is_leader = db.dialect != "postgresql"

    async def run(self) -> None:
        if self.is_leader:
            return
        while True:
            try:
                await self._hold_or_acquire()
            except Exception as exc:  # connection lost: drop it and try again next round
                log.warning("leader_election_failed", error_type=type(exc).__name__)
                await self._release()
            await asyncio.sleep(_ELECTION_INTERVAL_SECONDS)

    async def _hold_or_acquire(self) -> None:
        if self._conn is None:
            self._conn = await self._engine.connect()
            await self._conn.execute(text(f"SET idle_session_timeout = '{_IDLE_SESSION_TIMEOUT}'"))
            await self._conn.commit()
        if self.is_leader:
            await self._conn.execute(text("SELECT 1"))
            return
        acquired = await self._conn.scalar(
            text("SELECT pg_try_advisory_lock(:k)"), {"k": _LOCK_KEY}
        )
        await self._conn.commit()
        if acquired:
            self.is_leader = True
            log.info("leader_elected")

    async def _release(self) -> None:
        self.is_leader = False
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
            self._conn = None

    async def close(self) -> None:
        await self._release()
        await self._engine.dispose()


async def refresh_gauges(db: Database, snapshot: GaugeSnapshot, clock: Clock) -> None:
    now = clock()
    async with db.transaction() as conn:
        tenant_ids = list((await conn.execute(select(tenants.c.id))).scalars())
        active = await conn.execute(
            select(mandates.c.tenant_id, func.count())
            .where(mandates.c.status == MandateStatus.ACTIVE.value, mandates.c.expires_at > now)
            .group_by(mandates.c.tenant_id)
        )
        enabled = await conn.execute(
            select(users.c.tenant_id, users.c.role, func.count())
            .where(users.c.enabled.is_(True))
            .group_by(users.c.tenant_id, users.c.role)
        )
        backlog, oldest = (
            await conn.execute(
                select(func.count(), func.min(outbox.c.created_at)).where(
                    outbox.c.published_at.is_(None)
                )
            )
        ).one()
        counts = dict.fromkeys(tenant_ids, 0) | {row[0]: row[1] for row in active}
        snapshot.outbox_backlog = int(backlog)
        snapshot.outbox_oldest_age_seconds = (
            max((now - as_utc(oldest)).total_seconds(), 0.0) if oldest is not None else 0.0
        )
        snapshot.active_users = {(t, r): n for t, r, n in enabled}
        snapshot.mandates_active = counts


async def prune_outbox(db: Database, clock: Clock, retention: timedelta) -> None:
    """Published events older than `retention` are history; the delivery log keeps the rest."""
    async with db.transaction() as conn:
        await conn.execute(
            outbox.delete().where(
                outbox.c.published_at.is_not(None), outbox.c.published_at < clock() - retention
            )
        )


async def sweep_expired(db: Database, clock: Clock, on_events: Callable[[], None]) -> int:
    """Expire due mandates and emit MandateExpired for each, in one transaction."""
    now = clock()
    async with db.transaction() as conn:
        expired = await expire_due(conn, now)
        for row in expired:
            data = mandate_event_data(row)
            await enqueue_event(conn, row.tenant_id, EventType.MANDATE_EXPIRED, data, now)
    if expired:
        on_events()
    for row in expired:
        log.info("mandate_expired", mandate_id=row.id, tenant_id=row.tenant_id)
    return len(expired)


def gauge_reporter(
    db: Database, snapshot: GaugeSnapshot, clock: Clock, election: LeaderElection
) -> Callable[[], Awaitable[None]]:
    """Refresh the gauges while leading; report nothing (not stale values) otherwise."""

    async def report() -> None:
        if not election.is_leader:
            snapshot.reporting = False
            return
        await refresh_gauges(db, snapshot, clock)
        snapshot.reporting = True

    return report
