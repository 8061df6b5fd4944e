"""The consumer loop: thin on purpose.

It reads batches, handles each partition's records in order (partitions concurrently), and
commits a record's offset only after its handler returned (at-least-once; handlers are
idempotent). A record that cannot be decoded goes to the dead-letter topic and is committed, so
it never stalls the records behind it. If the database is unreachable the record is retried in
place until it is back: nothing is skipped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from opentelemetry.trace import Tracer
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError

from mandate_vault_shared.kafka import connection_options, consumer_span
from mandate_vault_shared.messages import WebhookJob
from mandate_vault_shared.telemetry import get_logger
from mandate_vault_worker.dead_letter import DeadLetters, format_origin
from mandate_vault_worker.settings import WorkerSettings

JobHandler = Callable[[WebhookJob, str], Awaitable[None]]

_RECONNECT_DELAY_SECONDS: Final = 1.0
_HANDLER_RETRY_SECONDS: Final = 1.0
_POLL_TIMEOUT_MS: Final = 500
_TRANSIENT: Final = (DBAPIError, OSError, KafkaError, TimeoutError)

log = get_logger(__name__)


class JobConsumer:
    def __init__(
        self,
        settings: WorkerSettings,
        tracer: Tracer,
        handler: JobHandler,
        dead_letters: DeadLetters,
    ) -> None:
        self._settings = settings
        self._tracer = tracer
        self._handler = handler
        self._dead_letters = dead_letters
        self._consumer: AIOKafkaConsumer | None = None

    @property
    def connected(self) -> bool:
        return self._consumer is not None

    def _build(self) -> AIOKafkaConsumer:
        kafka = self._settings.kafka
        return AIOKafkaConsumer(
            self._settings.jobs_topic,
            **connection_options(kafka),
            group_id=self._settings.consumer_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=self._settings.session_timeout_ms,
            heartbeat_interval_ms=self._settings.heartbeat_interval_ms,
            max_poll_records=self._settings.max_poll_records,
            fetch_max_wait_ms=self._settings.fetch_max_wait_ms,
        )

    async def run(self) -> None:
        """Consume until cancelled, reconnecting when the broker goes away."""
        while True:
            consumer = self._build()
            try:
                await consumer.start()
                self._consumer = consumer
                log.info("consumer_started", topic=self._settings.jobs_topic)
                await self._poll(consumer)
            except KafkaError as exc:
                log.warning("consumer_disconnected", error_type=type(exc).__name__)
                await asyncio.sleep(_RECONNECT_DELAY_SECONDS)
            except Exception as exc:
                # Anything else (a broker answering a malformed response after a crash made
                # aiokafka raise ValueError) must not end consumption for the process's life:
                # start over from the committed offsets.
                log.error("consumer_failed", error_type=type(exc).__name__, error=str(exc))
                await asyncio.sleep(_RECONNECT_DELAY_SECONDS)
            finally:
                self._consumer = None
                await consumer.stop()

    async def _poll(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=_POLL_TIMEOUT_MS)
            await asyncio.gather(
                *(self._partition(consumer, tp, records) for tp, records in batches.items())
            )

    async def _partition(
        self, consumer: AIOKafkaConsumer, partition: TopicPartition, records: list[Any]
    ) -> None:
        for record in records:
            await self._until_handled(record)
            try:
                await consumer.commit({partition: record.offset + 1})
            except CommitFailedError:
                # The partition moved to another member during a rebalance; it will replay
                # from the last commit and the handlers will recognise what is done.
                log.warning("commit_failed", partition=partition.partition, offset=record.offset)
                return

    async def _until_handled(self, record: Any) -> None:
        while True:
            try:
                await self._handle(record)
                return
            except _TRANSIENT as exc:
                log.warning(
                    "webhook_job_retrying",
                    partition=record.partition,
                    offset=record.offset,
                    error_type=type(exc).__name__,
                )
                await asyncio.sleep(_HANDLER_RETRY_SECONDS)

    async def _handle(self, record: Any) -> None:
        with consumer_span(self._tracer, record, self._settings.consumer_group):
            try:
                job = WebhookJob.decode(record.value)
            except ValidationError as exc:
                await self._poison(record, exc)
                return
            await self._handler(job, format_origin(record))

    async def _poison(self, record: Any, exc: ValidationError) -> None:
        origin = (record.topic, record.partition, record.offset)
        error = f"undecodable message: {exc.error_count()} validation error(s)"
        await self._dead_letters.publish(record.value, record.key, origin, error, 0)
        log.warning(
            "webhook_job_dead_lettered",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            reason="undecodable",
        )

    async def measure_lag(self, lag: dict[tuple[str, int], int]) -> None:
        """Highwater minus committed offset for every partition this member owns."""
        consumer = self._consumer
        if consumer is None:
            return
        current: dict[tuple[str, int], int] = {}
        for partition in consumer.assignment():
            highwater = consumer.highwater(partition)
            committed = await consumer.committed(partition)
            if highwater is not None:
                current[(partition.topic, partition.partition)] = max(
                    highwater - (committed or 0), 0
                )
        lag.clear()
        lag.update(current)
