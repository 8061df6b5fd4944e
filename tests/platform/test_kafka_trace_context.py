"""Trace context crosses Kafka: the producer's span is the parent of the worker's processing span."""

from __future__ import annotations

import httpx
from aiokafka import AIOKafkaConsumer

from mandate_vault_harness.broker import Broker
from mandate_vault_harness.kafka import a_job, produce_traced
from mandate_vault_harness.otlp import OtlpReceiver
from mandate_vault_harness.services import ServiceProcess
from mandate_vault_shared.kafka import header

CONSUMER_KIND = 5  # SPAN_KIND_CONSUMER


async def test_produced_message_carries_traceparent(broker: Broker, topic: str) -> None:
    trace_id, span_id = await produce_traced(broker.bootstrap, topic, a_job())
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
        trace_id, span_id = await produce_traced(broker.bootstrap, topic, a_job())
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
