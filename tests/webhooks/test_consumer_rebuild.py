"""The worker's consumer recovers by itself when the broker's consumer-group state breaks.

Both breakages are made on the real embedded broker, whose log and group offsets live in (local,
moto) S3 objects: the committed offsets of a partition made unreadable (the broker then fails
every offset fetch for the group, and aiokafka retries it forever without a word), and a
partition whose log lost its tail while the group kept its offsets (as after a SIGKILL at the
wrong moment: records written since get offsets the consumer has already passed). The consumer
must notice, rebuild itself, read those partitions from the start, and hand over every record.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from aiokafka import AIOKafkaProducer

from mandate_vault_harness.broker import Broker, MotoS3
from mandate_vault_harness.kafka import RecordingDispatcher, a_job
from mandate_vault_worker.consumer import JobConsumer
from mandate_vault_worker.dispatch import Window
from mandate_vault_worker.settings import WorkerSettings

STALL_SECONDS = 2.0
CLUSTER = "clusters/tansu_cluster"


@dataclass
class Durable:
    broker: Broker
    s3: Any  # a boto3 S3 client on the broker's bucket

    def put(self, key: str, body: bytes) -> None:
        self.s3.put_object(Bucket="tansu", Key=f"{CLUSTER}/{key}", Body=body)

    def delete_records_from(self, topic: str, partition: int, offset: int) -> None:
        """Drop the partition's records at `offset` and after, and lower its highwater mark."""
        prefix = f"{CLUSTER}/topics/{topic}/partitions/{partition:010d}/"
        listed = self.s3.list_objects_v2(Bucket="tansu", Prefix=f"{prefix}records/")
        for item in listed.get("Contents", []):
            if int(item["Key"].rsplit("/", 1)[1].split(".")[0]) >= offset:
                self.s3.delete_object(Bucket="tansu", Key=item["Key"])
        watermark = f'{{"low":null,"high":{offset},"timestamps":null}}'.encode()
        self.s3.put_object(Bucket="tansu", Key=f"{prefix}watermark.json", Body=watermark)


@pytest.fixture
def durable() -> Iterator[Durable]:
    s3 = MotoS3()
    s3.start()
    broker = Broker(storage="s3://tansu/", extra_env=s3.env)
    broker.start()
    client = boto3.client(
        "s3",
        endpoint_url=s3.env["AWS_ENDPOINT"],
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
    )
    yield Durable(broker, client)
    broker.stop()
    s3.stop()


async def produce(broker: Broker, topic: str, partitions: list[int]) -> list[str]:
    """One job per entry of `partitions`, sent to that partition; returns their event ids."""
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
    await producer.start()
    try:
        jobs = [a_job() for _ in partitions]
        for job, partition in zip(jobs, partitions, strict=True):
            await producer.send_and_wait(topic, job.encode(), partition=partition)
    finally:
        await producer.stop()
    return [job.event_id for job in jobs]


@contextlib.asynccontextmanager
async def consuming(
    broker: Broker, topic: str, rebuilds: list[str]
) -> AsyncIterator[RecordingDispatcher]:
    settings = WorkerSettings(
        kafka={"bootstrap_servers": broker.bootstrap},
        jobs_topic=topic,
        consumer_group=f"group-{topic}",
        session_timeout_ms=2000,
        heartbeat_interval_ms=300,
        consumer_stall_seconds=STALL_SECONDS,
        commit_interval_seconds=0.2,
    )
    recorder = RecordingDispatcher()
    consumer = JobConsumer(settings, recorder, rebuilds.append)  # type: ignore[arg-type]
    task = asyncio.create_task(consumer.run())
    try:
        yield recorder
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 30)


async def handled(recorder: RecordingDispatcher, expected: set[str]) -> set[str]:
    seen: set[str] = set()
    async with asyncio.timeout(45):
        while not expected <= seen:
            seen.add(await recorder.handled.get())
    return seen


async def test_an_offset_fetch_that_keeps_failing_rebuilds_the_consumer(durable: Durable) -> None:
    topic = "rebuild-fetch"
    durable.broker.create_topic(topic, 2)
    before = await produce(durable.broker, topic, [0, 1, 0, 1])
    rebuilds: list[str] = []
    async with consuming(durable.broker, topic, rebuilds) as recorder:
        await handled(recorder, set(before))
        await asyncio.sleep(1.0)  # committed
    durable.put(f"groups/consumers/group-{topic}/offsets/{topic}/partitions/0000000000.json", b"{")
    after = await produce(durable.broker, topic, [0, 1])
    async with consuming(durable.broker, topic, rebuilds) as recorder:
        seen = await handled(recorder, set(after))
        assert rebuilds[:1] == ["no_fetch_progress"]
        assert set(before[0::2]) <= seen | await drain(recorder)  # partition 0 read from start
        more = await produce(durable.broker, topic, [0, 1])
        await handled(recorder, set(more))
    async with consuming(durable.broker, topic, rebuilds) as recorder:
        last = await produce(durable.broker, topic, [0, 1])  # the offsets are readable again
        await handled(recorder, set(last))
    assert rebuilds == ["no_fetch_progress"], rebuilds


async def test_offsets_past_the_end_of_a_log_that_lost_its_tail_are_recovered(
    durable: Durable,
) -> None:
    topic = "rebuild-tail"
    durable.broker.create_topic(topic, 2)
    rebuilds: list[str] = []
    before = await produce(durable.broker, topic, [0, 0, 0, 0, 1])
    async with consuming(durable.broker, topic, rebuilds) as recorder:
        await handled(recorder, set(before))
        await asyncio.sleep(1.0)  # committed: partition 0 at offset 4
    durable.broker.stop()
    durable.delete_records_from(topic, 0, 1)  # acknowledged, then lost: offsets 1-3
    durable.broker.start()
    after = await produce(durable.broker, topic, [0, 0, 1])  # partition 0 offsets 1 and 2
    async with consuming(durable.broker, topic, rebuilds) as recorder:
        await handled(recorder, set(after))
    assert rebuilds == ["offsets_past_log_end"], rebuilds


async def drain(recorder: RecordingDispatcher) -> set[str]:
    found = set()
    while not recorder.handled.empty():
        found.add(recorder.handled.get_nowait())
    return found


class _Stuck(RecordingDispatcher):
    """A dispatcher whose jobs never finish: its one-job window stays full."""

    def __init__(self) -> None:
        super().__init__()
        self.window = Window(1)

    def accept(self, records: list[Any], offsets: list[Any]) -> None:
        self.window.take(len(records))
        for record in records:
            self.handled.put_nowait(record.offset)


async def test_an_idle_or_paused_consumer_is_not_rebuilt(broker: Broker, topic: str) -> None:
    """Quiet partitions are fetched (empty answers) and a full window pauses fetching on
    purpose: neither is a broken group."""
    broker.create_topic(topic, 2)
    settings = WorkerSettings(
        kafka={"bootstrap_servers": broker.bootstrap},
        jobs_topic=topic,
        consumer_group=f"group-{topic}",
        consumer_stall_seconds=STALL_SECONDS,
    )
    stuck, rebuilds = _Stuck(), list[str]()
    consumer = JobConsumer(settings, stuck, rebuilds.append)  # type: ignore[arg-type]
    task = asyncio.create_task(consumer.run())
    try:
        await asyncio.sleep(4 * STALL_SECONDS)  # idle
        await produce(broker, topic, [0, 1])
        await asyncio.wait_for(stuck.handled.get(), 30)
        await asyncio.sleep(4 * STALL_SECONDS)  # paused: the window is full
    finally:
        consumer.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert rebuilds == []
