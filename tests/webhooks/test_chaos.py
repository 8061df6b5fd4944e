"""1,000 events while workers are SIGKILLed at random points and the group rebalances:
nothing is lost, and a duplicate is always the same event under the same webhook-id."""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections import Counter
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer

from mandate_vault_harness.system import System, Tenant
from mandate_vault_shared.kafka import producer_span
from mandate_vault_shared.messages import EventType, WebhookJob

EVENTS = 1000
SUBSCRIPTIONS = 8
KILLS = 5
# Deliveries run concurrently: small windows and a slow subscriber keep the stream long enough
# (2 workers x 8 subscriptions x 1 in flight / 200 ms: ~80/s at best) for the kills to land
# mid-stream.
WORKER_OVERRIDES = {"WORKER_SUBSCRIPTION_WINDOW": "1"}


def jobs(tenant_id: str, subscription_ids: list[str]) -> list[tuple[str, WebhookJob]]:
    made = []
    for n in range(EVENTS):
        subscription_id = subscription_ids[n % len(subscription_ids)]
        event_id = f"msg_{uuid.uuid4().hex}"
        job = WebhookJob(
            event_id=event_id,
            event_type=EventType.MANDATE_CREATED,
            tenant_id=tenant_id,
            subscription_id=subscription_id,
            occurred_at=datetime.now(UTC),
            body=json.dumps({"type": "MandateCreated", "data": {"n": n, "event": event_id}}),
        )
        made.append((subscription_id, job))
    return made


async def produce(stack: System, batch: list[tuple[str, WebhookJob]]) -> None:
    from opentelemetry.trace import NoOpTracer

    from mandate_vault_shared.telemetry.semconv import MessagingTelemetry

    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap_servers, linger_ms=5)
    await producer.start()
    try:
        pending = []
        for subscription_id, job in batch:
            headers = job.headers()
            with producer_span(MessagingTelemetry(NoOpTracer()), stack.topic, headers):
                pending.append(
                    await producer.send(
                        stack.topic, job.encode(), key=subscription_id.encode(), headers=headers
                    )
                )
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def test_thousand_events_survive_sigkills_and_rebalances(
    stack: System, tenant: Tenant
) -> None:
    paths = [f"/chaos-{n}" for n in range(SUBSCRIPTIONS)]
    subscription_ids = [stack.subscribe(tenant, path)["id"] for path in paths]
    await asyncio.to_thread(stack.start_worker)  # two consumer-group members from the start
    batch = jobs(tenant.id, subscription_ids)
    bodies = {job.event_id: job.body.encode() for _, job in batch}
    await produce(stack, batch)

    stack.receiver.delay_seconds = 0.2
    rng = random.Random(1234)
    kills = 0
    in_flight_at_kill = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        received = {d.webhook_id for d in stack.receiver.received}
        if received >= bodies.keys():
            break
        if kills < KILLS:
            await asyncio.sleep(rng.uniform(0.3, 1.5))
            victim = rng.choice(stack.workers)
            in_flight_at_kill.append(EVENTS - len({d.webhook_id for d in stack.receiver.received}))
            victim.kill()
            stack.workers.remove(victim)
            kills += 1
            await asyncio.to_thread(stack.start_worker)
        else:
            await asyncio.sleep(0.2)

    deliveries = list(stack.receiver.received)
    received_ids = Counter(d.webhook_id for d in deliveries)
    lost = bodies.keys() - received_ids.keys()
    stack.receiver.delay_seconds = 0.0
    assert kills == KILLS
    assert sum(1 for outstanding in in_flight_at_kill if outstanding > 0) >= 3, in_flight_at_kill
    assert not lost, f"{len(lost)} events lost"
    assert received_ids.keys() <= bodies.keys()
    assert not stack.receiver.invalid
    for delivery in deliveries:  # a duplicate is the same event: same id, same signed body
        assert delivery.body == bodies[delivery.webhook_id]
    duplicates = sum(count - 1 for count in received_ids.values())
    print(
        f"\n{EVENTS} events, {KILLS} SIGKILLs (outstanding at each: {in_flight_at_kill}): "
        f"0 lost, {duplicates} duplicate deliveries"
    )
