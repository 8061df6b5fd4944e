"""The dead-letter topic: where an event goes after its last attempt, and where messages the
worker cannot even read go at once — with their origin, last error and attempt count in the
headers, and the trace context carried on."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from mandate_vault_shared.kafka import Headers, producer_span
from mandate_vault_shared.telemetry.semconv import MessagingTelemetry

HEADER_TOPIC = "dlq-original-topic"
HEADER_PARTITION = "dlq-original-partition"
HEADER_OFFSET = "dlq-original-offset"
HEADER_ERROR = "dlq-last-error"
HEADER_ATTEMPTS = "dlq-attempts"


class DeadLetters:
    def __init__(
        self, factory: Callable[[], AIOKafkaProducer], messaging: MessagingTelemetry, topic: str
    ) -> None:
        self._factory = factory
        self._producer: AIOKafkaProducer | None = None
        self._messaging = messaging
        self.topic = topic

    async def publish(
        self,
        value: bytes | None,
        key: bytes | None,
        origin: tuple[str, int, int] | None,
        error: str,
        attempts: int,
        extra: Headers | None = None,
    ) -> None:
        headers: Headers = list(extra or [])
        if origin is not None:
            topic, partition, offset = origin
            headers += [
                (HEADER_TOPIC, topic.encode()),
                (HEADER_PARTITION, str(partition).encode()),
                (HEADER_OFFSET, str(offset).encode()),
            ]
        headers += [(HEADER_ERROR, error[:500].encode()), (HEADER_ATTEMPTS, str(attempts).encode())]
        producer = await self._ensure()
        try:
            with producer_span(self._messaging, self.topic, headers):
                await producer.send_and_wait(self.topic, value, key=key, headers=headers)
        except (KafkaError, OSError):
            await self.close()
            raise

    async def _ensure(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = self._factory()
            try:
                await producer.start()
            except BaseException:
                await producer.stop()
                raise
            self._producer = producer
        return self._producer

    async def close(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            with contextlib.suppress(KafkaError, OSError):
                await producer.stop()


def parse_origin(source: str | None) -> tuple[str, int, int] | None:
    """`topic/partition/offset` as stored with the delivery."""
    if not source:
        return None
    topic, partition, offset = source.rsplit("/", 2)
    return topic, int(partition), int(offset)


def format_origin(record: Any) -> str:
    return f"{record.topic}/{record.partition}/{record.offset}"
