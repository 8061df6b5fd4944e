"""The consumer loop: thin on purpose. It decodes, opens the processing span, calls the handler
and commits only after the handler returns (at-least-once; handlers are safe to run twice)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from opentelemetry.trace import Tracer
from pydantic import ValidationError

from mandate_vault_shared.kafka import consumer_span
from mandate_vault_shared.messages import WebhookJob
from mandate_vault_shared.telemetry import get_logger
from mandate_vault_worker.settings import WorkerSettings

JobHandler = Callable[[WebhookJob], Awaitable[None]]

_RECONNECT_DELAY_SECONDS: Final = 1.0
_POLL_TIMEOUT_MS: Final = 500

log = get_logger(__name__)


class JobConsumer:
    def __init__(self, settings: WorkerSettings, tracer: Tracer, handler: JobHandler) -> None:
        self._settings = settings
        self._tracer = tracer
        self._handler = handler
        self._consumer: AIOKafkaConsumer | None = None

    @property
    def connected(self) -> bool:
        return self._consumer is not None

    def _build(self) -> AIOKafkaConsumer:
        kafka = self._settings.kafka
        return AIOKafkaConsumer(
            self._settings.jobs_topic,
            bootstrap_servers=kafka.bootstrap_servers,
            client_id=kafka.client_id,
            security_protocol=kafka.security_protocol,
            group_id=self._settings.consumer_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=self._settings.session_timeout_ms,
            heartbeat_interval_ms=self._settings.heartbeat_interval_ms,
            max_poll_records=self._settings.max_poll_records,
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
            finally:
                self._consumer = None
                await consumer.stop()

    async def _poll(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=_POLL_TIMEOUT_MS)
            for partition, records in batches.items():
                for record in records:
                    await self._handle(record)
                    await consumer.commit({partition: record.offset + 1})

    async def _handle(self, record: Any) -> None:
        with consumer_span(self._tracer, record, self._settings.consumer_group):
            try:
                job = WebhookJob.decode(record.value)
            except ValidationError as exc:
                log.warning(
                    "webhook_job_rejected",
                    topic=record.topic,
                    partition=record.partition,
                    offset=record.offset,
                    error_count=exc.error_count(),
                )
                return
            await self._handler(job)


def partition_of(record: Any) -> TopicPartition:
    return TopicPartition(record.topic, record.partition)
