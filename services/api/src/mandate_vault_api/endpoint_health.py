"""Endpoint health: a subscription whose endpoint has failed every attempt for too long is
disabled, and the tenant is told.

The worker keeps `webhook_subscriptions.failing_since` (set by the first failed attempt after a
success, cleared by the next success). The elected api replica's housekeeping disables every
enabled subscription failing since more than ``API_WEBHOOK_DISABLE_AFTER_SECONDS`` (5 days by
default, as Svix), with the reason, in one transaction with:

- an `endpoint.disabled` event for the tenant's OTHER subscriptions that chose that event type
  (never the disabled one: its endpoint is the one not answering),
- the announcement that makes the workers drop the subscription from their caches.

Then it logs `webhook_endpoint_disabled` and counts `webhook_endpoints_disabled_total`. Its
pending retries end as failed ("subscription disabled"), and so do the events it misses while
disabled; re-enabling it (PATCH `enabled: true`) resumes delivery, and
`POST /api/v1/webhooks/{id}/recover` sends what it missed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from mandate_vault_api.clock import Clock, as_utc
from mandate_vault_api.database import Database
from mandate_vault_api.metrics import ApiMetrics
from mandate_vault_api.revocation import SUBSCRIPTION, announce
from mandate_vault_api.webhooks import enqueue_event
from mandate_vault_shared.db.schema import webhook_subscriptions
from mandate_vault_shared.messages import EventType
from mandate_vault_shared.telemetry import get_logger, names

_REASON_LIMIT: Final = 200
_subs = webhook_subscriptions
log = get_logger(__name__)


def _reason(failing_since: datetime, period: timedelta) -> str:
    since = failing_since.isoformat(timespec="seconds").replace("+00:00", "Z")
    limit = f"{period.total_seconds():.0f} s"
    return f"endpoint failing: every attempt failed since {since} (limit {limit})"[:_REASON_LIMIT]


def event_data(row: Any, reason: str, now: datetime) -> dict[str, Any]:
    """The `endpoint.disabled` payload's `data`."""
    return {
        "subscription_id": row.id,
        "url": row.url,
        "reason": reason,
        "failing_since": as_utc(row.failing_since).isoformat().replace("+00:00", "Z"),
        "disabled_at": now.isoformat().replace("+00:00", "Z"),
    }


async def _disable(conn: AsyncConnection, row: Any, period: timedelta, now: datetime) -> int:
    """Disable one subscription and tell the tenant's other subscriptions; returns how many
    events were queued."""
    reason = _reason(as_utc(row.failing_since), period)
    await conn.execute(
        update(_subs)
        .where(_subs.c.id == row.id)
        .values(enabled=False, disabled_reason=reason, updated_at=now)
    )
    await announce(conn, SUBSCRIPTION, row.id)
    # `sequence`: the disabling time in ms, so a receiver can order one subscription's events.
    return await enqueue_event(
        conn,
        row.tenant_id,
        EventType.ENDPOINT_DISABLED,
        event_data(row, reason, now),
        now,
        exclude=row.id,
        sequence=int(now.timestamp() * 1000),
    )


async def disable_failing_endpoints(
    db: Database,
    clock: Clock,
    period: timedelta,
    metrics: ApiMetrics,
    on_events: Callable[[], None],
) -> int:
    """Disable every subscription failing for longer than `period`; returns how many."""
    now = clock()
    due = (
        select(_subs.c.id, _subs.c.tenant_id, _subs.c.url, _subs.c.failing_since)
        .where(_subs.c.enabled.is_(True), _subs.c.failing_since <= now - period)
        .with_for_update(skip_locked=True)
    )
    async with db.transaction() as conn:
        rows = (await conn.execute(due)).all()
        told = [await _disable(conn, row, period, now) for row in rows]
    if any(told):
        on_events()
    for row, queued in zip(rows, told, strict=True):
        metrics.endpoint_disabled()
        log.warning(
            names.EVENT_WEBHOOK_ENDPOINT_DISABLED,
            subscription_id=row.id,
            tenant_id=row.tenant_id,
            failing_since=as_utc(row.failing_since).isoformat(),
            disable_after_seconds=period.total_seconds(),
            notified_subscriptions=queued,
        )
    return len(rows)
