"""The outbox relay: publishes committed events to Kafka, then marks them published.

It runs on the elected replica only. Each message is keyed by its event id, so jobs spread
evenly over the partitions: one busy subscription's deliveries scale with partitions and worker
replicas instead of queueing on one partition (the worker delivers concurrently anyway, so a
partition never promised order; payloads carry `timestamp` and `sequence` for receivers). Rows
are marked after the broker acknowledged them: a crash in between re-publishes (consumers are
idempotent by ``webhook-id``, and the same key lands on the same partition), and a marked row is
never published again (unless reconciliation finds that the broker lost it: `reconcile`, which
sends the copy to another partition).
While Kafka is down rows simply wait; nothing is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from opentelemetry import context as otel_context
from opentelemetry import propagate
from sqlalchemy import Row, select, update

from mandate_vault_api.clock import Clock, as_utc
from mandate_vault_api.database import Database
from mandate_vault_shared.db.schema import outbox
from mandate_vault_shared.kafka import Headers, producer_span
from mandate_vault_shared.messages import EventType, WebhookJob
from mandate_vault_shared.producer import BROKER_ERRORS, ManagedProducer
from mandate_vault_shared.telemetry import get_logger
from mandate_vault_shared.telemetry.semconv import MessagingTelemetry

_RETRY_DELAY_SECONDS: Final = 1.0
_PARTITIONER: Final = DefaultPartitioner()  # the producer's choice for a key (murmur2)

log = get_logger(__name__)


class OutboxRelay:
    def __init__(
        self,
        db: Database,
        producer: ManagedProducer,
        messaging: MessagingTelemetry,
        topic: str,
        clock: Clock,
        *,
        batch_size: int,
        poll_interval: float,
    ) -> None:
        self._db = db
        self._producer = producer
        self._messaging = messaging
        self._topic = topic
        self._clock = clock
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._wakeup = asyncio.Event()
        self.last_progress = time.monotonic()

    def wake(self) -> None:
        """New rows were committed here: publish now rather than at the next poll."""
        self._wakeup.set()

    async def run(self, is_leader: Callable[[], bool]) -> None:
        while True:
            published = 0
            if is_leader():
                try:
                    published = await self.publish_batch()
                except BROKER_ERRORS as exc:
                    log.warning("outbox_publish_failed", error_type=type(exc).__name__)
                    await asyncio.sleep(_RETRY_DELAY_SECONDS)
                    continue
                except Exception as exc:  # the database is down: rows wait, the relay lives on
                    log.warning("outbox_publish_failed", error_type=type(exc).__name__)
                    await asyncio.sleep(_RETRY_DELAY_SECONDS)
                    continue
            else:
                self.last_progress = time.monotonic()
            if published < self._batch_size:
                await self._sleep()

    async def _sleep(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), self._poll_interval)
        self._wakeup.clear()

    async def publish_batch(self) -> int:
        async with self._db.transaction() as conn:
            query = select(outbox).where(outbox.c.published_at.is_(None)).order_by(outbox.c.id)
            rows = (
                await conn.execute(query.limit(self._batch_size).with_for_update(skip_locked=True))
            ).all()
            if not rows:
                self.last_progress = time.monotonic()
                return 0
            async with self._producer.use() as producer:
                await self._publish(producer, rows)
            await conn.execute(
                update(outbox)
                .where(outbox.c.id.in_([row.id for row in rows]))
                .values(published_at=self._clock())
            )
        self.last_progress = time.monotonic()
        return len(rows)

    async def republish(self, rows: Sequence[Row[Any]], moves: Mapping[str, int]) -> None:
        """Publish outbox `rows` again (same job, same key, same webhook-id), each on the
        partition `moves[event_id]` places after the one its key chooses: a partition that lost
        a record, or that no consumer can read any more, is not the only chance of the next
        copy. Raises when the broker did not acknowledge every one."""
        async with self._producer.use() as producer:
            partitions = sorted(await producer.partitions_for(self._topic))

            def partition_of(row: Row[Any]) -> int:
                home = partitions.index(_PARTITIONER(row.event_id.encode(), partitions, partitions))
                return int(partitions[(home + moves.get(row.event_id, 0)) % len(partitions)])

            await self._publish(producer, rows, partition_of)

    async def _publish(
        self,
        producer: AIOKafkaProducer,
        rows: Sequence[Row[Any]],
        partition_of: Callable[[Row[Any]], int | None] = lambda _: None,
    ) -> None:
        pending: list[Awaitable[Any]] = []
        for row in rows:
            job = WebhookJob(
                event_id=row.event_id,
                event_type=EventType(row.event_type),
                tenant_id=row.tenant_id,
                subscription_id=row.subscription_id,
                occurred_at=as_utc(row.created_at),
                body=row.payload,
            )
            headers: Headers = job.headers()
            parent = (
                propagate.extract(orjson.loads(row.trace_context)) if row.trace_context else None
            )
            token = otel_context.attach(parent) if parent is not None else None
            try:
                with producer_span(self._messaging, self._topic, headers):
                    pending.append(
                        await producer.send(
                            self._topic,
                            job.encode(),
                            key=row.event_id.encode(),
                            partition=partition_of(row),
                            headers=headers,
                        )
                    )
            finally:
                if token is not None:
                    otel_context.detach(token)
        await asyncio.gather(*pending)

    async def close(self) -> None:
        await self._producer.close()

    def stalled_for(self) -> float:
        return time.monotonic() - self.last_progress
