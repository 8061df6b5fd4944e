"""The consumer loop outlives failures that are not Kafka errors (a broker restarted after a
crash once answered a malformed response; aiokafka raised ValueError and consumption ended for
the life of the process)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiokafka import AIOKafkaConsumer

from mandate_vault_harness.broker import Broker
from mandate_vault_harness.kafka import RecordingDispatcher, a_job, produce_traced
from mandate_vault_worker import consumer as consumer_module
from mandate_vault_worker.consumer import JobConsumer
from mandate_vault_worker.settings import WorkerSettings


async def test_a_non_kafka_failure_restarts_consumption(
    broker: Broker, topic: str, monkeypatch: Any
) -> None:
    monkeypatch.setattr(consumer_module, "_RECONNECT_DELAY_SECONDS", 0.1)
    settings = WorkerSettings(
        kafka={"bootstrap_servers": broker.bootstrap},
        jobs_topic=topic,
        consumer_group=f"group-{topic}",
    )
    recorder = RecordingDispatcher()
    consumer = JobConsumer(settings, recorder)  # type: ignore[arg-type]
    real_poll = JobConsumer._poll
    polls = 0

    async def poll_failing_once(self: JobConsumer, kafka: AIOKafkaConsumer) -> None:
        nonlocal polls
        polls += 1
        if polls == 1:
            raise ValueError("unpack requires a buffer of 4 bytes")
        await real_poll(self, kafka)

    monkeypatch.setattr(JobConsumer, "_poll", poll_failing_once)
    job = a_job()
    await produce_traced(broker.bootstrap, topic, job)
    task = asyncio.create_task(consumer.run())
    try:
        assert await asyncio.wait_for(recorder.handled.get(), timeout=30) == job.event_id
        assert polls == 2
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
