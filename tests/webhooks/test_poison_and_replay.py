"""A poison message goes to the dead-letter topic without stalling what follows; replaying a
delivered message changes nothing."""

from __future__ import annotations

import asyncio
import json

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from mandate_vault_harness.issuer import Issuer
from mandate_vault_harness.kafka import dead_letters, headers_of
from mandate_vault_harness.system import System, Tenant
from mandate_vault_shared.kafka import header

TOPIC_PARTITIONS = 4  # the stack's topic (poison goes to every partition)


async def produce(
    stack: System,
    value: bytes,
    key: bytes,
    headers: list[tuple[str, bytes]],
    partition: int | None = None,
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(
            stack.topic, value, key=key, headers=headers, partition=partition
        )
    finally:
        await producer.stop()


async def test_poison_message_is_dead_lettered_and_does_not_block(
    stack: System, tenant: Tenant, bank: Issuer
) -> None:
    stack.subscribe(tenant, "/after-poison")
    subscription_key = stack.subscribe(tenant, "/poison-neighbour")["id"].encode()
    # In every partition, so it sits right in the way of whatever comes next.
    for partition in range(TOPIC_PARTITIONS):
        await produce(stack, b"\\x00not json at all", subscription_key, [], partition)
        poison = b'{"type": "webhook.job", "schema_version": 99}'
        await produce(stack, poison, subscription_key, [], partition)
    stack.create_mandate(tenant, bank.mandate())
    stack.receiver.wait_for(
        lambda r: len(r.at("/after-poison")) == 1 and len(r.at("/poison-neighbour")) == 1
    )
    records = await dead_letters(
        stack.bootstrap_servers, f"{stack.topic}.dlq", 2 * TOPIC_PARTITIONS
    )
    poisoned = [r for r in records if headers_of(r).get("dlq-attempts") == "0"]
    assert len(poisoned) == 2 * TOPIC_PARTITIONS
    for record in poisoned:
        headers = headers_of(record)
        assert headers["dlq-original-topic"] == stack.topic
        assert headers["dlq-last-error"].startswith("undecodable message")
        assert record.key == subscription_key


async def test_replaying_a_delivered_message_changes_nothing(
    stack: System, tenant: Tenant, bank: Issuer
) -> None:
    subscription = stack.subscribe(tenant, "/replay")
    stack.create_mandate(tenant, bank.mandate())
    stack.receiver.wait_for(lambda r: len(r.at("/replay")) == 1)
    webhook_id = stack.receiver.at("/replay")[0].webhook_id

    consumer = AIOKafkaConsumer(
        stack.topic,
        bootstrap_servers=stack.bootstrap_servers,
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    original = None
    try:
        while original is None:
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                for record in records:
                    if record.value and webhook_id.encode() in record.value:
                        original = record
    finally:
        await consumer.stop()
    assert header(original.headers, "traceparent")
    for _ in range(2):
        await produce(stack, original.value, original.key, list(original.headers))

    def replays_seen(r: object) -> bool:  # (at least: a rebalance may replay them again)
        logs = stack.workers[0].json_logs()
        replayed = [
            record
            for record in logs
            if record["event"] == "webhook_job_replayed" and record["webhook_id"] == webhook_id
        ]
        return len(replayed) >= 2

    await asyncio.to_thread(stack.receiver.wait_for, replays_seen)
    stack.create_mandate(tenant, bank.mandate())
    stack.receiver.wait_for(lambda r: len(r.at("/replay")) >= 2)
    assert len(stack.receiver.at("/replay")) == 2  # the original + the second mandate
    with stack.client(tenant) as client:
        log = client.get(f"/api/v1/webhooks/{subscription['id']}/deliveries").json()
    assert sorted(entry["event_id"] == webhook_id for entry in log) == [False, True]
    assert json.loads(stack.receiver.at("/replay")[0].body)["type"] == "MandateCreated"
