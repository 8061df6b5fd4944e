"""The dead-letter topic: where an event goes after its last attempt, and where messages the
worker cannot even read go at once — with their origin, last error and attempt count in the
headers, and the trace context carried on."""

from __future__ import annotations

from typing import Any

from mandate_vault_shared.kafka import Headers, producer_span
from mandate_vault_shared.producer import ManagedProducer
from mandate_vault_shared.telemetry.semconv import MessagingTelemetry

HEADER_TOPIC = "dlq-original-topic"
HEADER_PARTITION = "dlq-original-partition"
HEADER_OFFSET = "dlq-original-offset"
HEADER_ERROR = "dlq-last-error"
HEADER_ATTEMPTS = "dlq-attempts"


class DeadLetters:
    def __init__(
        self, producer: ManagedProducer, messaging: MessagingTelemetry, topic: str
    ) -> None:
        self._producer = producer
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
        async with self._producer.use() as producer:
            with producer_span(self._messaging, self.topic, headers):
                await producer.send_and_wait(self.topic, value, key=key, headers=headers)

    async def close(self) -> None:
        await self._producer.close()


def parse_origin(source: str | None) -> tuple[str, int, int] | None:
    """`topic/partition/offset` as stored with the delivery."""
    if not source:
        return None
    topic, partition, offset = source.rsplit("/", 2)
    return topic, int(partition), int(offset)


def format_origin(record: Any) -> str:
    return f"{record.topic}/{record.partition}/{record.offset}"
