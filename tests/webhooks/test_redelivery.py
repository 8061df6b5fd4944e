"""Redelivery end to end (api and worker processes, the broker, PostgreSQL): the delivery log
keeps what the endpoint answered; a dead letter replayed by the CLI is delivered exactly once
(and a copy of its Kafka message is not); a retry through the api resends the same webhook-id."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiokafka import AIOKafkaProducer

from mandate_vault_harness.issuer import Issuer
from mandate_vault_harness.kafka import dead_letters
from mandate_vault_harness.metrics import scrape, value
from mandate_vault_harness.receiver import Script
from mandate_vault_harness.services import cli
from mandate_vault_harness.system import System, Tenant
from mandate_vault_worker.delivery import BODY_LIMIT, readable_body


def events_of(
    stack: System, tenant: Tenant, subscription_id: str, **params: str
) -> list[dict[str, Any]]:
    with stack.client(tenant) as client:
        answer = client.get(f"/api/v1/webhooks/{subscription_id}/events", params=params)
    assert answer.status_code == 200, answer.text
    return list(answer.json())


def attempts_of(
    stack: System, tenant: Tenant, subscription_id: str, event_id: str
) -> list[dict[str, Any]]:
    with stack.client(tenant) as client:
        answer = client.get(f"/api/v1/webhooks/{subscription_id}/events/{event_id}/attempts")
    assert answer.status_code == 200, answer.text
    return list(answer.json())


def wait_for_status(
    stack: System, tenant: Tenant, subscription_id: str, status: str
) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = events_of(stack, tenant, subscription_id)
        if found and found[0]["status"] == status:
            return found[0]
        time.sleep(0.1)
    raise AssertionError(f"no event reached {status}: {events_of(stack, tenant, subscription_id)}")


def test_the_delivery_log_keeps_what_the_endpoint_answered(
    stack: System, tenant: Tenant, bank: Issuer
) -> None:
    secret = "whsec_" + "A" * 40
    body = (
        b'{"error": "busy", "api_key": "mvk_live_0123456789", "hint": "' + secret.encode() + b'"}'
        b"\x00\x07\x1b[31m" + "é".encode() + b"x" * 2000 + b"TAIL-NEVER-STORED"
    )
    stack.receiver.bodies["/answers"] = body
    busy: Script = lambda attempt: (503, {"Retry-After": "1"}) if attempt == 1 else (200, {})  # noqa: E731
    subscription = stack.subscribe(tenant, "/answers", script=busy)["id"]
    stack.create_mandate(tenant, bank.mandate())
    event = wait_for_status(stack, tenant, subscription, "succeeded")
    first, second = attempts_of(stack, tenant, subscription, event["event_id"])

    assert (first["status_code"], first["outcome"]) == (503, "retrying")
    assert first["retry_after_seconds"] == 1
    stored = first["response_body"]
    assert stored == readable_body(body)
    assert stored.startswith('{"error": "busy"')
    assert "mvk_live" not in stored
    assert secret not in stored
    assert "[REDACTED]" in stored
    assert not any(ch in stored for ch in "\x00\x07\x1b")
    assert "TAIL-NEVER-STORED" not in stored
    assert len(stored.encode()) <= BODY_LIMIT + 2 * len("[REDACTED]")
    assert first["latency_ms"] > 0
    assert (second["status_code"], second["outcome"]) == (200, "succeeded")
    assert second["retry_after_seconds"] is None
    assert second["response_body"] == stored  # the same answer body, the same treatment


async def test_a_replayed_dead_letter_is_delivered_once(
    stack: System, tenant: Tenant, bank: Issuer
) -> None:
    healthy = {"up": False}
    script: Script = lambda _: (204, {}) if healthy["up"] else (500, {})  # noqa: E731
    subscription = stack.subscribe(tenant, "/dead", script=script)["id"]
    stack.create_mandate(tenant, bank.mandate())
    event = wait_for_status(stack, tenant, subscription, "dead_lettered")
    webhook_id = event["event_id"]
    assert len(stack.receiver.at("/dead")) == 3  # the whole schedule: 1 + 2 retries

    # A copy of the dead-lettered message put back on the jobs topic (what the runbook used to
    # say) is recognised and dropped: only a recorded request redelivers.
    (record,) = [
        r
        for r in await dead_letters(stack.bootstrap_servers, f"{stack.topic}.dlq", 10, 5)
        if json.loads(r.value)["event_id"] == webhook_id
    ]
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(stack.topic, record.value, key=record.key)
    finally:
        await producer.stop()
    worker = stack.workers[0]
    deadline = time.monotonic() + 20
    while not any(
        r.get("event") == "webhook_job_replayed" and r.get("webhook_id") == webhook_id
        for r in worker.json_logs()
    ):
        assert time.monotonic() < deadline, "the copied message was never consumed"
        await asyncio.sleep(0.1)
    assert len(stack.receiver.at("/dead")) == 3

    healthy["up"] = True
    listed = cli(stack.database_url, "dead-letters", "list", "--subscription", subscription)
    assert listed.returncode == 0, listed.stderr
    assert webhook_id in listed.stdout
    replayed = cli(stack.database_url, "dead-letters", "replay", webhook_id)
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout.strip() == f"{webhook_id}: scheduled"
    audit = [json.loads(line) for line in replayed.stderr.splitlines() if line.startswith("{")]
    assert [(a["event"], a["source"], a["kind"], a["scheduled"]) for a in audit] == [
        ("webhook_redelivery_requested", "cli", "replay", 1)
    ]
    stack.receiver.wait_for(lambda r: len(r.at("/dead")) == 4)
    assert wait_for_status(stack, tenant, subscription, "succeeded")["attempts"] == 4
    again = cli(stack.database_url, "dead-letters", "replay", webhook_id)
    assert "not scheduled (status succeeded" in again.stdout
    await asyncio.sleep(1.5)  # several retry polls: nothing more may arrive
    deliveries = stack.receiver.at("/dead")
    assert len(deliveries) == 4
    assert {d.webhook_id for d in deliveries} == {webhook_id}
    samples = scrape(worker.url)
    assert value(samples, "webhook_redeliveries_total", source="cli", kind="replay") == 1


def test_a_retry_through_the_api_resends_the_same_webhook_id(
    stack: System, tenant: Tenant, bank: Issuer
) -> None:
    subscription = stack.subscribe(tenant, "/again")["id"]
    stack.create_mandate(tenant, bank.mandate())
    event = wait_for_status(stack, tenant, subscription, "succeeded")
    path = f"/api/v1/webhooks/{subscription}/events/{event['event_id']}/retry"
    with stack.client(tenant) as client:
        answer = client.post(path)
    assert answer.status_code == 202, answer.text
    assert answer.json()["scheduled"] is True
    stack.receiver.wait_for(lambda r: len(r.at("/again")) == 2)
    first, second = stack.receiver.at("/again")
    assert first.webhook_id == second.webhook_id == event["event_id"]
    assert first.body == second.body
    assert wait_for_status(stack, tenant, subscription, "succeeded")["redelivery"] is None
    attempts = attempts_of(stack, tenant, subscription, event["event_id"])
    assert [a["attempt"] for a in attempts] == [1, 2]
    samples = scrape(stack.workers[0].url)
    assert value(samples, "webhook_redeliveries_total", source="api", kind="retry") >= 1
