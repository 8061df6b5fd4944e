"""The worker's database side: subscriptions to sign for, delivery state, the attempt log.

The delivery table is the truth for what must still be delivered: a row exists once an event
was attempted or parked, and a `retrying` row with `next_attempt_at` is a scheduled attempt
(a retry, or a job parked because its subscription's window was full or its breaker open).
Writes are idempotent, so handling a Kafka message twice never duplicates the log or moves a
state backwards: attempt rows are keyed by (event_id, attempt), and a state only replaces one
with fewer attempts.

Every batch also keeps the subscriptions' endpoint health: `failing_since` is set by the first
failed attempt after a success and cleared by the next success (the api disables an endpoint
that has been failing for too long).

A redelivery asked for through the api or the CLI turns a finished row back into a due
`retrying` one with `redelivery` set; the retry poller then attempts it like any scheduled
attempt, and the attempt's write clears the marker.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Row, and_, bindparam, func, not_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mandate_vault_shared.db.schema import (
    webhook_deliveries,
    webhook_delivery_attempts,
    webhook_subscriptions,
)
from mandate_vault_shared.webhooks import SecretBox
from mandate_vault_worker.delivery import AttemptResult, Outcome, Target

PENDING = "pending"  # written by earlier versions before the first attempt
RETRYING = "retrying"
SUCCEEDED = "succeeded"
FAILED = "failed"
DEAD_LETTERED = "dead_lettered"
FINAL = frozenset({SUCCEEDED, FAILED, DEAD_LETTERED})

_d = webhook_deliveries
# What a newer write changes on an existing delivery row.
MOVING_COLUMNS = (
    "status",
    "attempts",
    "next_attempt_at",
    "last_status_code",
    "last_error",
    "updated_at",
    "redelivery",
)


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
    redelivery: str | None = None  # `<source>:<kind>` of a requested redelivery


class WriteKind(StrEnum):
    ATTEMPT = "attempt"  # an attempt was made: log it and move the state forward
    PARK = "park"  # first sight, not attempted: schedule it (a row that exists is kept)
    CLOSE = "close"  # nothing will be attempted (subscription deleted or disabled)


@dataclass(frozen=True)
class StateWrite:
    kind: WriteKind
    delivery: Delivery
    status: str
    attempts: int
    at: datetime
    next_attempt_at: datetime | None = None
    result: AttemptResult | None = None
    error: str | None = None
    disable_reason: str | None = None  # 410 Gone: the subscription is switched off


@asynccontextmanager
async def reading(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection for reads: autocommit, so no BEGIN/ROLLBACK round trips around them."""
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        yield conn


def _as_utc(value: datetime | None) -> datetime | None:
    return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)


def _insert(conn: AsyncConnection) -> Any:
    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert


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


async def known_events(conn: AsyncConnection, event_ids: Sequence[str]) -> set[str]:
    """The events among `event_ids` already attempted or scheduled (a replayed message)."""
    if not event_ids:
        return set()
    never_attempted = and_(_d.c.status == PENDING, _d.c.attempts == 0)
    rows = await conn.execute(
        select(_d.c.event_id).where(_d.c.event_id.in_(event_ids), not_(never_attempted))
    )
    return {row.event_id for row in rows}


async def due_candidates(
    conn: AsyncConnection,
    now: datetime,
    *,
    per_subscription: int,
    limit: int,
    exclude: Sequence[str],
) -> Sequence[Any]:
    """Scheduled attempts that are due, oldest first, at most `per_subscription` of each
    subscription (one busy subscription's backlog never hides another's retries). Read only:
    the caller claims the ones its lanes admit."""
    ranked = (
        select(
            _d.c.event_id,
            _d.c.subscription_id,
            _d.c.tenant_id,
            _d.c.next_attempt_at,
            func.row_number()
            .over(partition_by=_d.c.subscription_id, order_by=(_d.c.next_attempt_at, _d.c.event_id))
            .label("rank"),
        )
        .where(_d.c.status == RETRYING, _d.c.next_attempt_at <= now)
        .where(_d.c.subscription_id.not_in(exclude))
        .subquery()
    )
    query = (
        select(ranked.c.event_id, ranked.c.subscription_id, ranked.c.tenant_id)
        .where(ranked.c.rank <= per_subscription)
        .order_by(ranked.c.next_attempt_at)
        .limit(limit)
    )
    return (await conn.execute(query)).all()


async def claim(
    conn: AsyncConnection, event_ids: Sequence[str], now: datetime, until: datetime
) -> Sequence[Any]:
    """Lease due rows to this worker until `until` (another worker takes over a lease that
    expires, e.g. after a crash); returns the rows it got (another worker may have won some)."""
    return (
        await conn.execute(
            update(_d)
            .where(
                _d.c.event_id.in_(event_ids), _d.c.status == RETRYING, _d.c.next_attempt_at <= now
            )
            .values(next_attempt_at=until, updated_at=now)
            .returning(*_d.c)
        )
    ).all()


async def scheduled_count(conn: AsyncConnection) -> int:
    return int(
        (await conn.execute(select(func.count()).where(_d.c.status == RETRYING))).scalar_one()
    )


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
        redelivery=row.redelivery,
    )


# --- batched writes -------------------------------------------------------------------------


def state_row(write: StateWrite) -> dict[str, Any]:
    delivery, result = write.delivery, write.result
    return {
        "event_id": delivery.event_id,
        "subscription_id": delivery.subscription_id,
        "tenant_id": delivery.tenant_id,
        "event_type": delivery.event_type,
        "status": write.status,
        "attempts": write.attempts,
        "next_attempt_at": write.next_attempt_at,
        "last_status_code": result.status_code if result else None,
        "last_error": (write.error or (result.error if result else None) or None),
        "payload": delivery.payload,
        "trace_context": delivery.trace_context,
        "source": delivery.source,
        "created_at": write.at,
        "updated_at": write.at,
        "redelivery": None,  # taken up: whatever happens next is an ordinary attempt
    }


def attempt_row(write: StateWrite, result: AttemptResult) -> dict[str, Any]:
    delivery = write.delivery
    return {
        "id": str(uuid.uuid4()),
        "event_id": delivery.event_id,
        "subscription_id": delivery.subscription_id,
        "tenant_id": delivery.tenant_id,
        "attempt": write.attempts,
        "attempted_at": write.at,
        "status_code": result.status_code,
        "latency_ms": round(result.seconds * 1000, 2),
        "error": result.error,
        "outcome": write.status,
        "response_body": result.body,
        "retry_after_seconds": result.retry_after,
    }


def endpoint_health(writes: Iterable[StateWrite]) -> list[tuple[str, bool, datetime]]:
    """(subscription id, whether any attempt of the batch succeeded, its first attempt's time)
    per subscription attempted in `writes`, in id order (so concurrent batches lock the same
    rows in the same order). A 410 says nothing about the endpoint's health."""
    seen: dict[str, tuple[bool, datetime]] = {}
    for write in writes:
        result = write.result
        if result is None or result.outcome is Outcome.GONE:
            continue
        ok = result.outcome is Outcome.SUCCESS
        key = write.delivery.subscription_id
        earlier = seen.get(key)
        seen[key] = (
            (ok, write.at) if earlier is None else (earlier[0] or ok, min(earlier[1], write.at))
        )
    return [(key, ok, at) for key, (ok, at) in sorted(seen.items())]


def latest_per_event(writes: Iterable[StateWrite]) -> list[StateWrite]:
    """One write per event (the one with the most attempts): a statement may touch a row once."""
    chosen: dict[str, StateWrite] = {}
    for write in writes:
        current = chosen.get(write.delivery.event_id)
        if current is None or write.attempts > current.attempts:
            chosen[write.delivery.event_id] = write
    return list(chosen.values())


def replaces(existing: Any, incoming: Any) -> Any:
    """When a write may replace an existing row: it carries more attempts (a replay or a late
    duplicate never moves a state backwards), or the row was only opened by an earlier version
    of the worker (`pending`, nothing attempted)."""
    return or_(existing.attempts < incoming.attempts, existing.status == PENDING)


async def write_batch(conn: AsyncConnection, writes: Sequence[StateWrite]) -> None:
    """Every write of `writes` in the caller's transaction: a few multi-row statements."""
    insert = _insert(conn)
    moving = [w for w in writes if w.kind is not WriteKind.CLOSE]
    if moving:
        upsert = insert(_d)
        await conn.execute(
            upsert.on_conflict_do_update(
                index_elements=[_d.c.event_id],
                set_={name: upsert.excluded[name] for name in MOVING_COLUMNS},
                where=replaces(_d.c, upsert.excluded),
            ),
            [state_row(w) for w in latest_per_event(moving)],
        )
    logged = [attempt_row(w, w.result) for w in writes if w.result is not None]
    if logged:
        await conn.execute(insert(webhook_delivery_attempts).on_conflict_do_nothing(), logged)
    closing = [w for w in writes if w.kind is WriteKind.CLOSE]
    if closing:
        await conn.execute(
            insert(_d).on_conflict_do_nothing(), [state_row(w) for w in latest_per_event(closing)]
        )
    await _close(conn, closing)
    await _disable(conn, [w for w in writes if w.disable_reason is not None])
    await _keep_health(conn, endpoint_health(writes))


async def _keep_health(conn: AsyncConnection, health: Sequence[tuple[str, bool, datetime]]) -> None:
    subs = webhook_subscriptions
    healthy = [key for key, ok, _ in health if ok]
    failing = [{"b_id": key, "b_at": at} for key, ok, at in health if not ok]
    if healthy:
        await conn.execute(
            update(subs)
            .where(subs.c.id.in_(healthy), subs.c.failing_since.is_not(None))
            .values(failing_since=None)
        )
    if failing:
        await conn.execute(
            update(subs)
            .where(subs.c.id == bindparam("b_id"), subs.c.failing_since.is_(None))
            .values(failing_since=bindparam("b_at"))
            .execution_options(synchronize_session=False),
            failing,
        )


async def _close(conn: AsyncConnection, writes: Sequence[StateWrite]) -> None:
    """A scheduled row whose subscription went away ends as failed (not attempted again)."""
    if not writes:
        return
    await conn.execute(
        update(_d)
        .where(_d.c.event_id == bindparam("b_event_id"), _d.c.status.in_([PENDING, RETRYING]))
        .values(
            status=FAILED,
            last_error=bindparam("b_error"),
            updated_at=bindparam("b_at"),
            redelivery=None,  # a redelivery of a subscription gone meanwhile is over too
        )
        .execution_options(synchronize_session=False),
        [{"b_event_id": w.delivery.event_id, "b_error": w.error, "b_at": w.at} for w in writes],
    )


async def _disable(conn: AsyncConnection, writes: Sequence[StateWrite]) -> None:
    if not writes:
        return
    subs = webhook_subscriptions
    await conn.execute(
        update(subs)
        .where(subs.c.id == bindparam("b_id"))
        .values(enabled=False, disabled_reason=bindparam("b_reason"), updated_at=bindparam("b_at"))
        .execution_options(synchronize_session=False),
        [
            {"b_id": w.delivery.subscription_id, "b_reason": w.disable_reason, "b_at": w.at}
            for w in writes
        ],
    )
