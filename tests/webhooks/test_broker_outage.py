"""The broker is stopped while mandates are being created: every event arrives after it returns.

The broker here keeps its log and committed offsets in (local, moto) S3, like a real Kafka keeps
them on disk, so a restart is an outage rather than a wipe.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest

from mandate_vault_harness.broker import Broker, MotoS3
from mandate_vault_harness.issuer import Issuer, truststore_json
from mandate_vault_harness.receiver import start_receiver
from mandate_vault_harness.services import ServiceProcess
from tests.webhooks.conftest import PARTITIONS, Stack, bootstrap


@pytest.fixture
async def durable_broker() -> AsyncIterator[Broker]:
    s3 = MotoS3()
    await asyncio.to_thread(s3.start)
    broker = Broker(storage="s3://tansu/", extra_env=s3.env)
    broker.start()
    yield broker
    broker.stop()
    s3.stop()


async def test_events_created_during_a_broker_outage_are_all_delivered(
    database_url: str, durable_broker: Broker, bank: Issuer
) -> None:
    await bootstrap(database_url, bank.did)
    topic = "outage-jobs"
    durable_broker.create_topic(topic, PARTITIONS)
    receiver, server = start_receiver()
    verifier = ServiceProcess(
        "jwt-verifier", {"VERIFIER_TRUSTSTORE_JSON": truststore_json(bank)}
    ).start()
    stack = Stack(database_url, durable_broker, topic, verifier, receiver, None)
    try:
        await asyncio.to_thread(stack.start_api)
        await asyncio.to_thread(stack.start_worker)
        stack.subscribe("/outage", ["MandateCreated"])
        created = [stack.create_mandate(bank.mandate())["id"] for _ in range(5)]
        durable_broker.stop()
        for _ in range(10):  # accepted while Kafka is down: they wait in the outbox
            created.append(stack.create_mandate(bank.mandate())["id"])
        await asyncio.sleep(2)
        ready = httpx.get(f"{stack.api.url}/readyz").json()  # type: ignore[union-attr]
        assert ready["status"] == "ready"  # the api keeps serving; events are safe in the outbox
        durable_broker.start()
        for _ in range(5):
            created.append(stack.create_mandate(bank.mandate())["id"])

        def all_delivered(r: object) -> bool:
            got = {json.loads(d.body)["data"]["id"] for d in receiver.at("/outage")}
            return got >= set(created)

        await asyncio.to_thread(receiver.wait_for, all_delivered, 90)
    finally:
        stack.stop()
        verifier.stop()
        server.shutdown()
