"""Redelivery: send again what a subscription did not get (or, on request, did get).

One module for tenants (the api) and operators (`mandate-vault deliveries|dead-letters`). The
delivery table is the truth and the worker's schedule: a redelivery turns a finished delivery
row back into a due scheduled attempt (`status = retrying`, `next_attempt_at = now`) marked with
who asked (`redelivery = "<source>:<kind>"`). The worker's retry poller sends it through the
subscription's lane (window, breaker) with the same `webhook-id`, body and trace as the first
attempt. Nothing goes through Kafka again, so a Kafka message replayed by other means (an offset
reset, a copied dead-letter topic) still changes nothing: only a request recorded here
redelivers, and exactly once per request.

- Idempotent: only finished rows are turned back. While an event is scheduled or in flight,
  asking again schedules nothing more; once it is finished again it may be asked for again.
- Attempts go on counting. An event whose schedule is spent (dead-lettered) gets one attempt and
  is dead-lettered again if that fails; one never attempted (its subscription was disabled)
  gets the whole schedule.
- Only enabled subscriptions' deliveries are scheduled: re-enable first (a disabled
  subscription's deliveries would only be closed again by the worker).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from sqlalchemy import ColumnElement, Row, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from mandate_vault_api.clock import as_utc
from mandate_vault_api.webhooks import get_subscription
from mandate_vault_shared.db.schema import (
    webhook_deliveries,
    webhook_delivery_attempts,
    webhook_subscriptions,
)
from mandate_vault_shared.errors import Conflict, NotFound, Unprocessable
from mandate_vault_shared.telemetry import get_logger, names

RETRYING: Final = "retrying"
SUCCEEDED: Final = "succeeded"
FAILED: Final = "failed"
DEAD_LETTERED: Final = "dead_lettered"
STATUSES: Final = ("pending", RETRYING, SUCCEEDED, FAILED, DEAD_LETTERED)
RETRYABLE: Final = (SUCCEEDED, FAILED, DEAD_LETTERED)  # one event, on request
RECOVERABLE: Final = (FAILED, DEAD_LETTERED)  # every one since a time

_d = webhook_deliveries
_a = webhook_delivery_attempts
log = get_logger(__name__)


class Source(StrEnum):
    API = "api"  # a tenant, through the api
    CLI = "cli"  # an operator, through `mandate-vault`


class Kind(StrEnum):
    RETRY = "retry"  # named events
    RECOVER = "recover"  # a subscription's failed and dead-lettered events since a time
    REPLAY = "replay"  # dead letters (operators)


@dataclass(frozen=True)
class Selection:
    """Which deliveries: every given criterion must hold."""

    tenant_id: str | None = None
    subscription_id: str | None = None
    event_ids: tuple[str, ...] = ()
    since: datetime | None = None  # created at or after
    statuses: tuple[str, ...] = ()

    def clauses(self) -> list[ColumnElement[bool]]:
        found: list[ColumnElement[bool]] = []
        if self.tenant_id is not None:
            found.append(_d.c.tenant_id == self.tenant_id)
        if self.subscription_id is not None:
            found.append(_d.c.subscription_id == self.subscription_id)
        if self.event_ids:
            found.append(_d.c.event_id.in_(self.event_ids))
        if self.since is not None:
            found.append(_d.c.created_at >= self.since)
        if self.statuses:
            found.append(_d.c.status.in_(self.statuses))
        return found


@dataclass(frozen=True)
class Retried:
    event_id: str
    status: str
    scheduled: bool  # False: it was already scheduled or in flight


def check_since(since: datetime, now: datetime) -> datetime:
    """`since` as given, refused when it is in the future (nothing could match yet)."""
    if as_utc(since) > now:
        raise Unprocessable("`since` is in the future.", code="since_in_future")
    return since


async def list_deliveries(
    conn: AsyncConnection, selection: Selection, limit: int
) -> Sequence[Row[Any]]:
    """Delivery rows (one per event and subscription), newest first."""
    query = (
        select(_d)
        .where(*selection.clauses())
        .order_by(_d.c.created_at.desc(), _d.c.event_id.desc())
        .limit(limit)
    )
    return (await conn.execute(query)).all()


async def get_delivery(
    conn: AsyncConnection, tenant_id: str, subscription_id: str, event_id: str
) -> Row[Any]:
    """One event of one of the tenant's subscriptions (another tenant's answers 404)."""
    await get_subscription(conn, tenant_id, subscription_id)
    selection = Selection(tenant_id, subscription_id, (event_id,))
    row = (await conn.execute(select(_d).where(*selection.clauses()))).one_or_none()
    if row is None:
        raise NotFound("Webhook event not found.")
    return row


async def list_attempts(conn: AsyncConnection, event_id: str) -> Sequence[Row[Any]]:
    """Every attempt of an event, first first."""
    query = select(_a).where(_a.c.event_id == event_id).order_by(_a.c.attempt)
    return (await conn.execute(query)).all()


async def schedule(
    conn: AsyncConnection, selection: Selection, now: datetime, source: Source, kind: Kind
) -> list[str]:
    """Turn the selected finished deliveries of enabled subscriptions into due attempts;
    returns the event ids scheduled (in the caller's transaction)."""
    statuses = [s for s in selection.statuses or RETRYABLE if s in RETRYABLE]
    enabled = select(webhook_subscriptions.c.id).where(webhook_subscriptions.c.enabled.is_(True))
    statement = (
        update(_d)
        .where(*selection.clauses(), _d.c.status.in_(statuses), _d.c.subscription_id.in_(enabled))
        .values(
            status=RETRYING,
            next_attempt_at=now,
            updated_at=now,
            redelivery=f"{source.value}:{kind.value}",
        )
        .returning(_d.c.event_id)
    )
    return [row.event_id for row in await conn.execute(statement)]


async def _enabled_subscription(
    conn: AsyncConnection, tenant_id: str, subscription_id: str
) -> None:
    subscription = await get_subscription(conn, tenant_id, subscription_id)
    if not subscription.enabled:
        raise Conflict(
            "The subscription is disabled: enable it first, then redeliver.",
            code="subscription_disabled",
        )


async def retry(
    conn: AsyncConnection,
    tenant_id: str,
    subscription_id: str,
    event_id: str,
    now: datetime,
    source: Source,
) -> Retried:
    """Deliver one event of the tenant's subscription again (any finished one)."""
    current = await get_delivery(conn, tenant_id, subscription_id, event_id)
    await _enabled_subscription(conn, tenant_id, subscription_id)
    selection = Selection(tenant_id, subscription_id, (event_id,), statuses=RETRYABLE)
    scheduled = bool(await schedule(conn, selection, now, source, Kind.RETRY))
    return Retried(event_id, RETRYING if scheduled else current.status, scheduled)


async def recover(
    conn: AsyncConnection,
    tenant_id: str,
    subscription_id: str,
    since: datetime,
    now: datetime,
    source: Source,
) -> list[str]:
    """Deliver again every failed or dead-lettered event of the subscription since `since`."""
    await _enabled_subscription(conn, tenant_id, subscription_id)
    selection = Selection(
        tenant_id, subscription_id, since=check_since(since, now), statuses=RECOVERABLE
    )
    return await schedule(conn, selection, now, source, Kind.RECOVER)


def audit(
    source: Source, kind: Kind, actor: str, selection: Selection, scheduled: Sequence[str]
) -> None:
    """The `webhook_redelivery_requested` log event of one request."""
    log.info(
        names.EVENT_WEBHOOK_REDELIVERY_REQUESTED,
        source=source.value,
        kind=kind.value,
        user_id=actor,
        tenant_id=selection.tenant_id,
        subscription_id=selection.subscription_id,
        webhook_ids=list(selection.event_ids[:20]) or None,
        since=selection.since.isoformat() if selection.since else None,
        scheduled=len(scheduled),
    )
