"""Turns fetched records and due rows into concurrent deliveries, within bounded windows.

- `accept` takes a batch of fetched records without waiting: each becomes a task that checks
  whether its event was already handled (one query per batch), asks its subscription's lane,
  and either delivers or parks it. When the task's write is committed its offset is finished.
- `run_retries` polls the delivery table for due attempts (retries and parked jobs), at most a
  subscription window's worth per subscription, claims only those the lanes admit, and
  delivers them. It polls every ``WORKER_RETRY_POLL_INTERVAL_SECONDS``, and at once when a lane
  with parked jobs frees a slot.
- `window` bounds the jobs in flight in this worker (``WORKER_MAX_IN_FLIGHT``): the consumer
  pauses fetching while it is full.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine, Sequence
from datetime import timedelta
from typing import Any, Final

import orjson
from opentelemetry import context as otel_context
from opentelemetry import propagate
from opentelemetry.trace import SpanKind
from pydantic import ValidationError

from mandate_vault_shared.kafka import consumer_span
from mandate_vault_shared.messages import WebhookJob
from mandate_vault_shared.telemetry import get_logger
from mandate_vault_worker import store
from mandate_vault_worker.dead_letter import format_origin
from mandate_vault_worker.handlers import WorkerDeps, current_context, deliver, park, persist
from mandate_vault_worker.lanes import Admission, Lane
from mandate_vault_worker.offsets import PartitionOffsets

_FORGET_LANES_EVERY: Final = 60.0

log = get_logger(__name__)


class Window:
    """A count of jobs in flight with a ceiling; `wait_for_room` sleeps while it is full."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.used = 0
        self._room = asyncio.Event()
        self._room.set()
        self._gave = asyncio.Event()

    def room(self) -> int:
        return self.size - self.used

    def take(self, count: int) -> None:
        self.used += count
        if self.used >= self.size:
            self._room.clear()

    def give(self, count: int = 1) -> None:
        self.used -= count
        if self.used < self.size:
            self._room.set()
        self._gave.set()
        self._gave = asyncio.Event()

    async def wait_for_room(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._room.wait(), seconds)

    async def given(self) -> None:
        """Return when a job next leaves the window."""
        await self._gave.wait()


class Dispatcher:
    def __init__(self, deps: WorkerDeps) -> None:
        self._deps = deps
        self.window = Window(deps.settings.max_in_flight)
        self._tasks: set[asyncio.Task[None]] = set()
        self._in_progress: dict[str, asyncio.Future[None]] = {}  # event id -> its handling
        self._poll_now = asyncio.Event()
        deps.lanes.on_slot_freed = self._slot_freed
        deps.metrics.observe_in_flight(lambda: self.window.used)

    # --- records from Kafka ---------------------------------------------------------------

    def accept(self, records: Sequence[Any], offsets: Sequence[PartitionOffsets]) -> None:
        """Take fetched records (in offset order per partition) with their partitions'
        bookkeeping; returns at once."""
        fresh = [(r, p) for r, p in zip(records, offsets, strict=True) if p.start(r.offset)]
        if len(fresh) < len(records):
            log.warning("records_seen_again", records=len(records) - len(fresh))
        if fresh:
            self.window.take(len(fresh))
            self._spawn(self._batch([r for r, _ in fresh], [p for _, p in fresh]))

    async def _batch(self, records: Sequence[Any], offsets: Sequence[PartitionOffsets]) -> None:
        jobs = [_decode(record) for record in records]
        ids = [job.event_id for job in jobs if isinstance(job, WebhookJob)]
        known = await persist(lambda: self._known(ids), "replay_check", f"{len(ids)} events")
        for record, partition, job in zip(records, offsets, jobs, strict=True):
            replay = isinstance(job, WebhookJob) and job.event_id in known
            self._spawn(self._first_sight(record, partition, job, replay))

    async def _known(self, ids: list[str]) -> set[str]:
        if self._deps.fast is not None:
            return await self._deps.fast.known(ids)
        async with store.reading(self._deps.engine) as conn:
            return await store.known_events(conn, ids)

    async def _first_sight(
        self,
        record: Any,
        partition: PartitionOffsets,
        job: WebhookJob | ValidationError,
        replay: bool,
    ) -> None:
        try:
            with consumer_span(self._deps.messaging, record, self._deps.settings.consumer_group):
                if isinstance(job, ValidationError):
                    await self._poison(record, job)
                elif replay:
                    log.info("webhook_job_replayed", webhook_id=job.event_id)
                else:
                    await self._once(record, job)
        except BaseException:  # cancelled (the worker stops): not finished, it will replay
            self.window.give()
            raise
        partition.finished(record.offset)
        self.window.give()

    async def _once(self, record: Any, job: WebhookJob) -> None:
        """Handle `job`, or wait for this worker's handling of the same event (a duplicate)."""
        earlier = self._in_progress.get(job.event_id)
        if earlier is not None:
            await earlier
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._in_progress[job.event_id] = done
        try:
            await self._new_job(record, job)
        finally:
            del self._in_progress[job.event_id]
            done.set_result(None)

    async def _new_job(self, record: Any, job: WebhookJob) -> None:
        delivery = store.Delivery(
            event_id=job.event_id,
            subscription_id=job.subscription_id,
            tenant_id=job.tenant_id,
            event_type=job.event_type.value,
            payload=job.body,
            trace_context=current_context(),
            source=format_origin(record),
            attempts=0,
        )
        lanes = self._deps.lanes
        lane = lanes.lane(job.subscription_id, job.tenant_id)
        admission = lanes.admit(lane, from_table=False)
        if admission is Admission.ADMITTED:
            await deliver(self._deps, delivery, 1, lane)
        else:
            await park(self._deps, delivery, admission, lane)
            self._poll_now.set()

    async def _poison(self, record: Any, exc: ValidationError) -> None:
        origin = (record.topic, record.partition, record.offset)
        error = f"undecodable message: {exc.error_count()} validation error(s)"
        await persist(
            lambda: self._deps.dead_letters.publish(record.value, record.key, origin, error, 0),
            "dead_letter",
            format_origin(record),
        )
        log.warning(
            "webhook_job_dead_lettered",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            reason="undecodable",
        )

    # --- scheduled attempts from the delivery table ----------------------------------------

    async def run_retries(self) -> None:
        """The retry poller: runs until cancelled."""
        settings = self._deps.settings
        forgot_lanes = time.monotonic()
        while True:
            try:
                claimed = await self.poll_due()
            except Exception as exc:  # the database is away: the next round tries again
                log.warning("background_job_failed", job="retries", error_type=type(exc).__name__)
                claimed = 0
            if claimed < settings.retry_batch_size or self.window.room() <= 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._poll_now.wait(), settings.retry_poll_interval_seconds
                    )
                self._poll_now.clear()
            if time.monotonic() - forgot_lanes > _FORGET_LANES_EVERY:
                self._deps.lanes.forget_idle()
                forgot_lanes = time.monotonic()

    async def poll_due(self) -> int:
        """Claim and start the due attempts the lanes admit now; returns how many."""
        deps = self._deps
        room = min(self.window.room(), deps.settings.retry_batch_size)
        if room <= 0:
            return 0
        now = deps.clock()
        blocked = deps.lanes.blocked()
        async with store.reading(deps.engine) as conn:
            rows = await store.due_candidates(
                conn, now, per_subscription=deps.lanes.window, limit=room, exclude=blocked
            )
        self._unpark(rows, set(blocked), complete=len(rows) < room)
        admitted: dict[str, Lane] = {}
        for row in rows:
            lane = deps.lanes.lane(row.subscription_id, row.tenant_id)
            if deps.lanes.admit(lane, from_table=True) is Admission.ADMITTED:
                admitted[row.event_id] = lane
        if not admitted:
            return 0
        return await self._claim(admitted)

    async def _claim(self, admitted: dict[str, Lane]) -> int:
        deps = self._deps
        self.window.take(len(admitted))
        now = deps.clock()
        lease = timedelta(seconds=deps.settings.delivery_timeout_seconds * 2 + 5)
        claimed: Sequence[Any] = []
        try:
            async with deps.engine.begin() as conn:
                claimed = await store.claim(conn, list(admitted), now, now + lease)
        finally:
            won = {row.event_id for row in claimed}
            for event_id, lane in admitted.items():
                if event_id not in won:  # another worker claimed it first (or the claim failed)
                    deps.lanes.release(lane, None)
                    self.window.give()
        for row in claimed:
            self._spawn(self._retry(row, admitted[row.event_id]))
        return len(claimed)

    def _unpark(self, rows: Sequence[Any], blocked: set[str], *, complete: bool) -> None:
        """Lanes whose parked jobs are all gone from the due rows take new jobs directly again."""
        if not complete:
            return
        waiting = {row.subscription_id for row in rows}
        for lane in self._deps.lanes.parked():
            if lane.subscription_id not in waiting and lane.subscription_id not in blocked:
                lane.parked = False

    async def _retry(self, row: Any, lane: Lane) -> None:
        """A scheduled attempt continues the event's trace: a child of its first processing."""
        delivery = store.delivery_of(row)
        if delivery.redelivery is not None:
            self._deps.metrics.redelivered(delivery.redelivery)
        carrier = orjson.loads(delivery.trace_context) if delivery.trace_context else {}
        token = otel_context.attach(propagate.extract(carrier))
        try:
            with self._deps.tracer.start_as_current_span(
                "process webhook retry",
                kind=SpanKind.CONSUMER,
                attributes={
                    "mandate_vault.webhook_id": delivery.event_id,
                    "mandate_vault.attempt": row.attempts + 1,
                },
            ):
                await deliver(self._deps, delivery, row.attempts + 1, lane)
        finally:
            otel_context.detach(token)
            self.window.give()

    def _slot_freed(self, lane: Lane) -> None:
        if lane.parked:
            self._poll_now.set()

    # --- tasks ----------------------------------------------------------------------------

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.error("webhook_job_failed", error_type=type(exc).__name__, error=str(exc))

    async def drain(self, seconds: float) -> int:
        """Let the jobs in flight finish for up to `seconds`; returns how many did not."""
        deadline = asyncio.get_running_loop().time() + seconds
        while self._tasks:  # tasks may start others (a batch starts one per record)
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            await asyncio.wait(set(self._tasks), timeout=left)
        return len(self._tasks)

    def cancel(self) -> None:
        for task in self._tasks:
            task.cancel()


def _decode(record: Any) -> WebhookJob | ValidationError:
    try:
        return WebhookJob.decode(record.value)
    except ValidationError as exc:
        return exc
