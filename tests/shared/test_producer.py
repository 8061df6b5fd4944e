"""The one managed Kafka producer, against the real broker: started on first use, dropped on a
broker error (which the caller sees), connected again on the next use."""

from __future__ import annotations

import socket

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError

from mandate_vault_harness.broker import Broker
from mandate_vault_shared.producer import ManagedProducer


def unused_address() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


async def test_starts_on_first_use_and_sends(broker: Broker, topic: str) -> None:
    broker.create_topic(topic, 1)
    managed = ManagedProducer(lambda: AIOKafkaProducer(bootstrap_servers=broker.bootstrap))
    assert not managed.connected  # a service starts while the broker may be down
    try:
        async with managed.use() as producer:
            await producer.send_and_wait(topic, b"first")
        assert managed.connected
        async with managed.use() as again:
            assert again is producer  # one producer per process, not one per send
            await again.send_and_wait(topic, b"second")
    finally:
        await managed.close()
    assert not managed.connected
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    try:
        batches = await consumer.getmany(timeout_ms=5000, max_records=2)
    finally:
        await consumer.stop()
    assert sorted(r.value for records in batches.values() for r in records) == [b"first", b"second"]


async def test_a_broker_error_drops_the_producer_and_the_next_use_reconnects(
    broker: Broker, topic: str
) -> None:
    broker.create_topic(topic, 1)
    addresses = [unused_address(), broker.bootstrap]
    managed = ManagedProducer(
        lambda: AIOKafkaProducer(bootstrap_servers=addresses.pop(0), request_timeout_ms=2000)
    )
    with pytest.raises(KafkaConnectionError):
        async with managed.use():
            pass
    assert not managed.connected
    try:
        async with managed.use() as producer:
            await producer.send_and_wait(topic, b"after")
        async with managed.use():
            raise OSError("connection reset")  # raised inside the block: dropped, re-raised
    except OSError:
        assert not managed.connected
    finally:
        await managed.close()
