"""Trace context crosses Kafka: the producer's span is the parent of the worker's processing span."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from mandate_vault_shared.kafka import header, producer_span
from mandate_vault_shared.messages import EventType, WebhookJob
from mandate_vault_shared.telemetry.semconv import MessagingTelemetry
from tests.fixtures.broker import Broker
from tests.fixtures.otlp import OtlpReceiver
from tests.fixtures.services import ServiceProcess

CONSUMER_KIND = 5  # SPAN_KIND_CONSUMER


def a_job() -> WebhookJob:
    return WebhookJob(
        event_id=f"msg_{uuid.uuid4().hex}",
        event_type=EventType.MANDATE_CREATED,
        tenant_id="tenant-1",
        subscription_id="sub-1",
        occurred_at=datetime.now(UTC),
        body='{"type":"MandateCreated","data":{"mandate_id":"m-1"}}',
    )


async def produce(broker: Broker, topic: str, job: WebhookJob) -> tuple[str, str]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
    await producer.start()
    try:
        headers = job.headers()
        with producer_span(MessagingTelemetry(provider.get_tracer("test")), topic, headers):
            await producer.send_and_wait(topic, job.encode(), key=b"sub-1", headers=headers)
    finally:
        await producer.stop()
    (span,) = exporter.get_finished_spans()
    return format(span.context.trace_id, "032x"), format(span.context.span_id, "016x")


async def test_produced_message_carries_traceparent(broker: Broker, topic: str) -> None:
    trace_id, span_id = await produce(broker, topic, a_job())
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    try:
        record = await consumer.getone()
    finally:
        await consumer.stop()
    version, traced, parent, flags = str(header(record.headers, "traceparent")).split("-")
    assert (version, traced, parent) == ("00", trace_id, span_id)
    assert int(flags, 16) & 1  # sampled
    assert header(record.headers, "event-type") == "MandateCreated"
    assert header(record.headers, "schema-version") == "1"


async def test_worker_processing_span_is_a_child_of_the_producer_span(
    broker: Broker, topic: str, otlp: OtlpReceiver, sqlite_url: str
) -> None:
    worker = ServiceProcess(
        "webhook-worker",
        {
            "WORKER_KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap,
            "WORKER_JOBS_TOPIC": topic,
            "WORKER_CONSUMER_GROUP": f"group-{topic}",
            "WORKER_SESSION_TIMEOUT_MS": "2000",
            "WORKER_HEARTBEAT_INTERVAL_MS": "300",
            "WORKER_DATABASE_URL": sqlite_url,
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        },
    ).start()
    try:
        trace_id, span_id = await produce(broker, topic, a_job())
        otlp.wait_for(lambda r: any(s.name == f"process {topic}" for s in r.spans), timeout=30)
        assert httpx.get(f"{worker.url}/readyz").status_code == 200
    finally:
        worker.stop()
    span = next(s for s in otlp.spans if s.name == f"process {topic}")
    assert span.kind == CONSUMER_KIND
    assert (span.trace_id, span.parent_span_id) == (trace_id, span_id)
    assert span.attributes["messaging.destination.name"] == topic
    # The job names a subscription that does not exist: handled (skipped), in the same trace.
    skipped = [r for r in worker.json_logs() if r["event"] == "webhook_skipped"]
    assert len(skipped) == 1
    assert skipped[0]["trace_id"] == trace_id
