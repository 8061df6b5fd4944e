"""Reconciliation: the database, not the broker's acknowledgement, decides what gets delivered.

Every event the relay published must end in the delivery log (``webhook_deliveries``): the
worker writes a row for every job it takes, whatever becomes of it (delivered, scheduled for a
retry, parked behind a full window or an open breaker, closed because its subscription went
away). An event published long ago that still has no row was acknowledged by the broker and
then lost: a broker that crashed before its log reached disk, a partition that lost its tail
while the consumer group's offsets still point past it. The reconciler publishes such an event
again exactly as the relay did (same key, same webhook-id: receivers deduplicate, and the worker
drops the message if the event is known by then), and counts, logs and alerts on it. Each copy
goes to the partition after the one the previous copy went to: the embedded broker, killed at
the wrong moment, has left partitions that acknowledge writes but can no longer be read past
some offset, and a copy sent there again would be lost again.

An event without a row is taken for lost only when
- it was published more than ``API_OUTBOX_RECONCILE_GRACE_SECONDS`` ago (default 300 s, far
  more than the worker needs to write a row: one attempt bounded by its delivery timeout, or an
  immediate park in the delivery table), and
- the worker has recorded an event newer than it among the newest outbox rows, or it is the
  newest event of all. A worker that is down or far behind shows no progress, so reconciliation
  waits instead of republishing a backlog the worker simply has not reached yet (only the newest
  event goes out again, once per grace period, until the worker records it).

Each pass looks at the rows between a watermark and the first row created after the grace
cutoff (at most `_MAX_ROWS_PER_PASS`), republishes at most ``API_OUTBOX_RECONCILE_BATCH_SIZE``
of them, and moves the watermark over the settled prefix (published before the cutoff and
recorded). A republished row is re-marked published, so it is checked again one grace period
later. A replica that becomes the leader starts ``API_OUTBOX_RECONCILE_LOOKBACK_SECONDS`` back.
(Ids are taken at insert and rows commit in milliseconds; a row committed more than a grace
period after a newer one could be passed over.)
Only the elected replica runs it (beside the relay); candidates are locked with ``FOR UPDATE
SKIP LOCKED`` and must still be published before the cutoff, so two replicas that both believe
they lead (briefly, around an election) never republish one event twice in a grace period.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import ColumnElement, Row, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from mandate_vault_api.clock import Clock, as_utc
from mandate_vault_api.database import Database
from mandate_vault_api.relay import OutboxRelay
from mandate_vault_shared.db.schema import outbox, webhook_deliveries
from mandate_vault_shared.telemetry import get_logger, names

# Rows examined per pass (primary-key ranges): bounds a pass after a long outage or at start.
_MAX_ROWS_PER_PASS: Final = 50_000
# How many of the newest rows are searched for the worker's progress.
_PROGRESS_PROBE_ROWS: Final = 10_000
_MAX_REMEMBERED: Final = 100_000  # republish counts kept (they pick the next partition)

log = get_logger(__name__)
_o = outbox
_recorded = exists().where(webhook_deliveries.c.event_id == _o.c.event_id)


@dataclass(frozen=True)
class _Window:
    low: int  # exclusive: everything up to it is settled
    high: int  # inclusive: the last row created before the cutoff (or the pass's bound)
    progress: int | None  # the newest event the worker recorded
    tail: int  # the newest event of all


class Reconciler:
    def __init__(
        self,
        db: Database,
        relay: OutboxRelay,
        clock: Clock,
        on_reconciled: Callable[[int], None],
        *,
        grace: timedelta,
        lookback: timedelta,
        batch_size: int,
    ) -> None:
        self._db = db
        self._relay = relay
        self._clock = clock
        self._on_reconciled = on_reconciled
        self._grace = grace
        self._lookback = lookback
        self._batch_size = batch_size
        self._watermark: int | None = None
        self._moves: dict[str, int] = {}  # event id -> times republished (by this replica)

    async def run_pass(self) -> int:
        """Republish the lost events found now (at most a batch); returns how many."""
        now = self._clock()
        cutoff = now - self._grace
        async with self._db.read() as conn:
            if self._watermark is None:
                self._watermark = await _start(conn, now - self._lookback)
            window = await _window(conn, self._watermark, cutoff)
        if window is None:
            return 0
        republished = await self._republish(window, cutoff)
        async with self._db.read() as conn:
            self._watermark = await _settled_up_to(conn, window, cutoff)
        return republished

    async def _republish(self, window: _Window, cutoff: datetime) -> int:
        async with self._db.transaction() as conn:
            rows = (await conn.execute(_candidates(window, cutoff, self._batch_size))).all()
            if not rows:
                return 0
            moves = {row.event_id: self._moves.get(row.event_id, 0) + 1 for row in rows}
            await self._relay.republish(rows, moves)
            ids = [row.id for row in rows]
            marked = update(_o).where(_o.c.id.in_(ids)).values(published_at=self._clock())
            await conn.execute(marked)
        if len(self._moves) > _MAX_REMEMBERED:
            self._moves.clear()
        self._moves.update(moves)
        self._report(rows)
        return len(rows)

    def _report(self, rows: Sequence[Row[Any]]) -> None:
        now = self._clock()
        for row in rows:
            log.warning(
                names.EVENT_WEBHOOK_RECONCILED,
                webhook_id=row.event_id,
                event_type=row.event_type,
                subscription_id=row.subscription_id,
                tenant_id=row.tenant_id,
                published_seconds_ago=round((now - as_utc(row.published_at)).total_seconds(), 1),
            )
        self._on_reconciled(len(rows))


async def _start(conn: AsyncConnection, since: datetime) -> int:
    """The watermark of a fresh start: the newest row created before `since` (or 0)."""
    found = await conn.scalar(
        select(_o.c.id).where(_o.c.created_at < since).order_by(_o.c.id.desc()).limit(1)
    )
    return int(found or 0)


async def _window(conn: AsyncConnection, watermark: int, cutoff: datetime) -> _Window | None:
    tail = await conn.scalar(select(func.max(_o.c.id)))
    if tail is None or tail <= watermark:
        return None
    fresh = await conn.scalar(
        select(_o.c.id)
        .where(_o.c.id > watermark, _o.c.created_at >= cutoff)
        .order_by(_o.c.id)
        .limit(1)
    )
    high = min(tail if fresh is None else fresh - 1, watermark + _MAX_ROWS_PER_PASS)
    if high <= watermark:
        return None
    newest = (
        select(_o.c.id, _o.c.event_id)
        .where(_o.c.id > watermark)
        .order_by(_o.c.id.desc())
        .limit(_PROGRESS_PROBE_ROWS)
        .subquery()
    )
    progress = await conn.scalar(
        select(func.max(newest.c.id)).where(
            exists().where(webhook_deliveries.c.event_id == newest.c.event_id)
        )
    )
    return _Window(watermark, high, progress, tail)


def _candidates(window: _Window, cutoff: datetime, limit: int) -> Any:
    eligible: ColumnElement[bool] = _o.c.id == window.tail
    if window.progress is not None:
        eligible = or_(_o.c.id < window.progress, eligible)
    return (
        select(_o)
        .where(_o.c.id > window.low, _o.c.id <= window.high)
        .where(_o.c.published_at < cutoff, ~_recorded, eligible)
        .order_by(_o.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True, of=_o)
    )


async def _settled_up_to(conn: AsyncConnection, window: _Window, cutoff: datetime) -> int:
    """The new watermark: the end of the window's prefix that needs no more looking at."""
    unsettled = or_(_o.c.published_at.is_(None), _o.c.published_at >= cutoff, ~_recorded)
    first = await conn.scalar(
        select(func.min(_o.c.id)).where(_o.c.id > window.low, _o.c.id <= window.high, unsettled)
    )
    return window.high if first is None else int(first) - 1
