"""Kafka as tests and scenarios read and write it: what the relay actually published (every
message of a topic, read back from the beginning, counted per outbox event: 1 is ideal, more
are at-least-once duplicates), the dead letters, and a webhook job produced with its trace."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from mandate_vault_shared.kafka import header, producer_span
from mandate_vault_shared.messages import EventType, WebhookJob
from mandate_vault_shared.telemetry.semconv import MessagingTelemetry
from mandate_vault_worker.dispatch import Window
from mandate_vault_worker.offsets import PartitionOffsets


def publishes_per_event(
    bootstrap: str, topic: str, expected: Collection[str], timeout: float = 30.0
) -> Counter[str]:
    """event_id -> messages on `topic`; reads until every `expected` id was seen and the topic
    has been quiet for a second (or `timeout`)."""
    return asyncio.run(_count(bootstrap, topic, set(expected), timeout))


async def _count(bootstrap: str, topic: str, expected: set[str], patience: float) -> Counter[str]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    counts: Counter[str] = Counter()
    await consumer.start()
    try:
        deadline = time.monotonic() + patience
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200, max_records=1000)
            records = [record for batch in batches.values() for record in batch]
            for record in records:
                counts[json.loads(record.value)["event_id"]] += 1
            if records:
                quiet_since = time.monotonic()
            elif expected <= counts.keys() and time.monotonic() - quiet_since > 1.0:
                break
    finally:
        await consumer.stop()
    return counts


def publish_figures(counts: Counter[str], expected: Collection[str]) -> dict[str, object]:
    """Mean and max publishes per expected event, and how many were never published."""
    per_event = [counts.get(event_id, 0) for event_id in expected]
    published = [n for n in per_event if n > 0]
    return {
        "events": len(per_event),
        "never_published": sum(1 for n in per_event if n == 0),
        "publishes_per_event_mean": round(sum(published) / len(published), 4) if published else 0,
        "publishes_per_event_max": max(published, default=0),
    }


async def dead_letters(
    bootstrap: str, topic: str, expected: int, wait_seconds: float = 20
) -> list[Any]:
    """The records of a dead-letter topic, once `expected` are there (or after the wait)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    found: list[Any] = []
    try:
        async with asyncio.timeout(wait_seconds):
            while len(found) < expected:
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    found += records
    except TimeoutError:
        pass
    finally:
        await consumer.stop()
    return found


def headers_of(record: Any) -> dict[str, str]:
    return {key: str(header(record.headers, key)) for key, _ in record.headers}


def a_job() -> WebhookJob:
    """A MandateCreated job of tenant-1's subscription sub-1."""
    return WebhookJob(
        event_id=f"msg_{uuid.uuid4().hex}",
        event_type=EventType.MANDATE_CREATED,
        tenant_id="tenant-1",
        subscription_id="sub-1",
        occurred_at=datetime.now(UTC),
        body='{"type":"MandateCreated","data":{"mandate_id":"m-1"}}',
    )


async def produce_traced(bootstrap: str, topic: str, job: WebhookJob) -> tuple[str, str]:
    """Produce `job` inside a producer span, as the relay does; (trace id, span id) of it."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        headers = job.headers()
        with producer_span(MessagingTelemetry(provider.get_tracer("test")), topic, headers):
            await producer.send_and_wait(topic, job.encode(), key=b"sub-1", headers=headers)
    finally:
        await producer.stop()
    (span,) = exporter.get_finished_spans()
    return format(span.context.trace_id, "032x"), format(span.context.span_id, "016x")


class RecordingDispatcher:
    """Stands in for the worker's Dispatcher where the consumer is under test: every record
    handed over is finished at once and its event id recorded in `handled`."""

    def __init__(self) -> None:
        self.window = Window(100)
        self.handled: asyncio.Queue[str] = asyncio.Queue()

    def accept(self, records: list[Any], offsets: list[PartitionOffsets]) -> None:
        for record, partition in zip(records, offsets, strict=True):
            partition.start(record.offset)
            partition.finished(record.offset)
            self.handled.put_nowait(WebhookJob.decode(record.value).event_id)

    async def drain(self, seconds: float) -> int:
        return 0
