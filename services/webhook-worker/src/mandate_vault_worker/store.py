"""The worker's database side: subscriptions to sign for, delivery state, the attempt log.

Every outcome is written in one transaction (attempt row + delivery state), and the attempt row
is keyed by (event_id, attempt), so handling the same Kafka message twice never duplicates the
log or moves the state twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Row, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from mandate_vault_shared.db.schema import (
    webhook_deliveries,
    webhook_delivery_attempts,
    webhook_subscriptions,
)
from mandate_vault_shared.webhooks import SecretBox
from mandate_vault_worker.delivery import AttemptResult, Target

PENDING = "pending"
RETRYING = "retrying"
SUCCEEDED = "succeeded"
FAILED = "failed"
DEAD_LETTERED = "dead_lettered"
FINAL = frozenset({SUCCEEDED, FAILED, DEAD_LETTERED})


@dataclass(frozen=True)
class Delivery:
    """What the worker needs to attempt (or re-attempt) one event for one subscription."""

    event_id: str
    subscription_id: str
    tenant_id: str
    event_type: str
    payload: str
    trace_context: str | None
    source: str | None
    attempts: int


def _as_utc(value: datetime | None) -> datetime | None:
    return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)


def _insert(conn: AsyncConnection) -> Any:
    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert


async def open_delivery(conn: AsyncConnection, delivery: Delivery, now: datetime) -> Row[Any]:
    """The event's delivery state, created on first sight (a replay finds the existing one)."""
    await conn.execute(
        _insert(conn)(webhook_deliveries)
        .values(
            event_id=delivery.event_id,
            subscription_id=delivery.subscription_id,
            tenant_id=delivery.tenant_id,
            event_type=delivery.event_type,
            status=PENDING,
            attempts=0,
            payload=delivery.payload,
            trace_context=delivery.trace_context,
            source=delivery.source,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing()
    )
    return (
        await conn.execute(
            select(webhook_deliveries)
            .where(webhook_deliveries.c.event_id == delivery.event_id)
            .with_for_update()
        )
    ).one()


async def target_for(
    conn: AsyncConnection, box: SecretBox, subscription_id: str, now: datetime
) -> Target | str:
    """Where and with which secrets to deliver, or why not (deleted, disabled)."""
    row = (
        await conn.execute(
            select(webhook_subscriptions).where(webhook_subscriptions.c.id == subscription_id)
        )
    ).one_or_none()
    if row is None:
        return "subscription deleted"
    if not row.enabled:
        return f"subscription disabled ({row.disabled_reason or 'by the tenant'})"
    secrets = [box.open(row.secret_ciphertext)]
    expires = _as_utc(row.previous_secret_expires_at)
    if row.previous_secret_ciphertext and expires is not None and expires > now:
        secrets.append(box.open(row.previous_secret_ciphertext))
    return Target(url=row.url, secrets=tuple(secrets))


async def record_attempt(
    conn: AsyncConnection,
    delivery: Delivery,
    attempt: int,
    result: AttemptResult,
    outcome: str,
    now: datetime,
) -> bool:
    """Log the attempt; False when this attempt was already logged (a replay)."""
    inserted = await conn.execute(
        _insert(conn)(webhook_delivery_attempts)
        .values(
            id=str(uuid.uuid4()),
            event_id=delivery.event_id,
            subscription_id=delivery.subscription_id,
            tenant_id=delivery.tenant_id,
            attempt=attempt,
            attempted_at=now,
            status_code=result.status_code,
            latency_ms=round(result.seconds * 1000, 2),
            error=result.error,
            outcome=outcome,
        )
        .on_conflict_do_nothing()
    )
    return bool(inserted.rowcount)


async def set_state(
    conn: AsyncConnection,
    event_id: str,
    status: str,
    attempts: int,
    now: datetime,
    *,
    result: AttemptResult | None = None,
    next_attempt_at: datetime | None = None,
    error: str | None = None,
) -> None:
    await conn.execute(
        update(webhook_deliveries)
        .where(webhook_deliveries.c.event_id == event_id)
        .values(
            status=status,
            attempts=attempts,
            next_attempt_at=next_attempt_at,
            last_status_code=result.status_code if result else None,
            last_error=(error or (result.error if result else None)),
            updated_at=now,
        )
    )


async def disable_subscription(
    conn: AsyncConnection, subscription_id: str, reason: str, now: datetime
) -> None:
    await conn.execute(
        update(webhook_subscriptions)
        .where(webhook_subscriptions.c.id == subscription_id)
        .values(enabled=False, disabled_reason=reason, updated_at=now)
    )


async def claim_due(
    conn: AsyncConnection, now: datetime, limit: int, lease: timedelta
) -> Sequence[Row[Any]]:
    """Retries that are due, leased to this worker for `lease` (another worker takes over a
    lease that expires, e.g. after a crash)."""
    rows = (
        await conn.execute(
            select(webhook_deliveries)
            .where(
                webhook_deliveries.c.status == RETRYING, webhook_deliveries.c.next_attempt_at <= now
            )
            .order_by(webhook_deliveries.c.next_attempt_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    ).all()
    if rows:
        await conn.execute(
            update(webhook_deliveries)
            .where(webhook_deliveries.c.event_id.in_([row.event_id for row in rows]))
            .values(next_attempt_at=now + lease)
        )
    return rows


def delivery_of(row: Row[Any]) -> Delivery:
    return Delivery(
        event_id=row.event_id,
        subscription_id=row.subscription_id,
        tenant_id=row.tenant_id,
        event_type=row.event_type,
        payload=row.payload,
        trace_context=row.trace_context,
        source=row.source,
        attempts=row.attempts,
    )
