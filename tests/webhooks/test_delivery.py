"""Signed deliveries end to end: subscription -> mandate -> outbox -> Kafka -> worker -> receiver."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer

from mandate_vault_harness.issuer import Issuer
from mandate_vault_harness.metrics import scrape, value
from mandate_vault_harness.services import ServiceProcess
from mandate_vault_harness.system import System, Tenant
from mandate_vault_shared.webhooks import sign


def test_known_answer_vector() -> None:
    signature = sign(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1614265330,
        b'{"test": 2432232314}',
    )
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def check_delivered_bodies(deliveries: list[Any], mandate_id: str, tenant_id: str) -> None:
    """The three events arrived signed, in the documented shape."""
    types = [json.loads(d.body)["type"] for d in deliveries]
    assert sorted(types) == ["MandateCreated", "MandateRevoked", "MandateVerificationFailed"]
    first = next(d for d in deliveries if json.loads(d.body)["type"] == "MandateCreated")
    body = json.loads(first.body)
    assert body["data"]["id"] == mandate_id
    assert body["data"]["tenant_id"] == tenant_id
    assert body["timestamp"].endswith("Z")
    # Receivers order one mandate's events themselves: sequence = the mandate's version.
    assert (body["sequence"], body["data"]["version"]) == (1, 1)
    revoked = next(json.loads(d.body) for d in deliveries if b"MandateRevoked" in d.body)
    assert (revoked["sequence"], revoked["data"]["version"]) == (2, 2)
    assert revoked["timestamp"] >= body["timestamp"]
    assert "vc_jwt" not in first.body.decode()
    assert first.webhook_id.startswith("msg_")
    assert abs(int(first.headers["webhook-timestamp"]) - time.time()) < 60
    assert first.headers["content-type"] == "application/json"
    assert first.headers["traceparent"].startswith("00-")


def check_delivery_log(
    stack: System, tenant: Tenant, subscription_id: str, webhook_ids: set[str]
) -> None:
    """The subscription's delivery log lists each delivery; no listing shows a secret."""
    with stack.client(tenant) as client:
        log = client.get(f"/api/v1/webhooks/{subscription_id}/deliveries").json()
        listed = client.get("/api/v1/webhooks").json()
    assert len(log) == 3
    assert {entry["outcome"] for entry in log} == {"succeeded"}
    assert {entry["status_code"] for entry in log} == {204}
    assert all(entry["latency_ms"] >= 0 and entry["attempt"] == 1 for entry in log)
    assert {entry["event_id"] for entry in log} == webhook_ids
    assert all("secret" not in item for item in listed)


def check_worker_telemetry(stack: System, worker: ServiceProcess) -> None:
    """The worker counted, timed and logged each delivery, and reports its consumer lag."""
    time.sleep(0.8)
    samples = scrape(worker.url)
    assert value(samples, "webhook_deliveries_total", status="success") == 3
    assert (
        value(samples, "webhook_deliveries_total", event_type="MandateCreated", status="success")
        == 1
    )
    assert (
        value(samples, "webhook_delivery_duration_seconds_count", event_type="MandateRevoked") == 1
    )
    assert any(
        s.name == "webhook_consumer_lag" and s.labels["topic"] == stack.topic for s in samples
    )
    logged = [r for r in worker.json_logs() if r["event"] == "webhook_delivery"]
    assert len(logged) == 3
    assert all(
        {"webhook_id", "event_type", "subscription_id", "status", "status_code", "duration_ms"}
        <= set(r)
        for r in logged
    )


def test_events_are_delivered_signed_and_logged(
    stack: System, tenant: Tenant, bank: Issuer
) -> None:
    subscription = stack.subscribe(
        tenant, "/all", ["MandateCreated", "MandateVerificationFailed", "MandateRevoked"]
    )
    assert subscription["secret"].startswith("whsec_")
    assert len(subscription["secret"]) >= len("whsec_") + 32
    created = stack.create_mandate(tenant, bank.mandate())
    stack.create_mandate(tenant, bank.mandate()[:-4] + "AAAA")
    with stack.client(tenant) as client:
        client.post(f"/api/v1/mandates/{created['id']}/revoke")
    stack.receiver.wait_for(lambda r: len(r.at("/all")) == 3)

    deliveries = stack.receiver.at("/all")
    assert not stack.receiver.invalid
    check_delivered_bodies(deliveries, created["id"], tenant.id)
    check_delivery_log(stack, tenant, subscription["id"], {d.webhook_id for d in deliveries})
    check_worker_telemetry(stack, stack.workers[0])


def test_only_subscribed_event_types_are_delivered(
    stack: System, tenant: Tenant, bank: Issuer
) -> None:
    stack.subscribe(tenant, "/revocations", ["MandateRevoked"])
    stack.subscribe(tenant, "/creations", ["MandateCreated"])
    created = stack.create_mandate(tenant, bank.mandate())
    with stack.client(tenant) as client:
        client.post(f"/api/v1/mandates/{created['id']}/revoke")
    stack.receiver.wait_for(
        lambda r: len(r.at("/revocations")) == 1 and len(r.at("/creations")) == 1
    )
    time.sleep(0.5)
    assert len(stack.receiver.at("/revocations")) == 1
    assert json.loads(stack.receiver.at("/revocations")[0].body)["type"] == "MandateRevoked"


def test_rotation_signs_with_both_secrets_for_the_window(
    stack: System, tenant: Tenant, bank: Issuer
) -> None:
    subscription = stack.subscribe(tenant, "/rotating")
    old_secret = subscription["secret"]
    with stack.client(tenant) as client:
        rotated = client.post(f"/api/v1/webhooks/{subscription['id']}/rotate-secret").json()
    assert rotated["secret"] != old_secret
    assert rotated["previous_secret_expires_at"] is not None
    stack.receiver.secrets["/rotating"] = [old_secret, rotated["secret"]]
    stack.create_mandate(tenant, bank.mandate())
    stack.receiver.wait_for(lambda r: len(r.at("/rotating")) == 1)
    delivery = stack.receiver.at("/rotating")[0]
    assert delivery.verified_by == [0, 1]  # each secret verifies its own signature
    assert len(delivery.headers["webhook-signature"].split(" ")) == 2


def test_expired_mandates_emit_mandate_expired(stack: System, tenant: Tenant, bank: Issuer) -> None:
    stack.subscribe(tenant, "/expiry", ["MandateExpired"])
    created = stack.create_mandate(tenant, bank.mandate(expires_in=2))
    stack.receiver.wait_for(lambda r: len(r.at("/expiry")) == 1, timeout=20)
    body = json.loads(stack.receiver.at("/expiry")[0].body)
    assert (body["type"], body["data"]["id"], body["data"]["status"]) == (
        "MandateExpired",
        created["id"],
        "EXPIRED",
    )


def test_subscription_bad_input_and_ssrf_at_registration(stack: System, tenant: Tenant) -> None:
    refused = [
        "http://10.0.0.7/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://2130706433/hook",
        "http://0177.0.0.1/hook",
        "http://0x7f.1/hook",
        "http://[::ffff:7f00:1]/hook",
        "http://localhost/hook",  # a hostname that resolves to a blocked address
        "ftp://example.com/hook",
        "http://user:pass@example.com/hook",
    ]
    # This api has no allow-list: loopback is refused like every other blocked range.
    api = ServiceProcess(
        "api",
        {"API_DATABASE_URL": stack.database_url, "API_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:1"},
    ).start()
    strict = httpx.Client(base_url=api.url, headers=tenant.headers(), timeout=10)
    with strict as client:
        for url in refused:
            response = client.post(
                "/api/v1/webhooks", json={"url": url, "event_types": ["MandateCreated"]}
            )
            assert response.status_code == 422, (url, response.text)
            assert response.json()["error"] == "url_not_allowed", url
        bad = [
            {"url": "http://example.com/x", "event_types": []},
            {"url": "http://example.com/x", "event_types": ["Nope"]},
            {"url": "http://example.com/x", "event_types": ["MandateCreated"], "secret": "mine"},
            {"url": "http://example.com/x", "event_types": ["MandateCreated"], "tenant_id": "x"},
        ]
        before = {item["id"] for item in client.get("/api/v1/webhooks").json()}
        for body in bad:
            assert client.post("/api/v1/webhooks", json=body).status_code == 422, body
        after = {item["id"] for item in client.get("/api/v1/webhooks").json()}
    api.stop()
    assert before == after


def test_production_requires_https(stack: System, tenant: Tenant) -> None:
    api = ServiceProcess(
        "api",
        {
            "ENVIRONMENT": "production",
            "LOG_LEVEL": "INFO",
            "API_DATABASE_URL": stack.database_url,
            "API_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:1",
            "API_SSRF_ALLOWLIST": "127.0.0.1",
            "API_TOKEN_SIGNING_KEY": "a-production-signing-key-000",
            "API_WEBHOOK_ENCRYPTION_KEY": "cHJvZHVjdGlvbi1vbmx5LXdlYmhvb2sta2V5LTAwMDA=",
        },
    ).start()
    headers = tenant.headers()
    response = httpx.post(
        f"{api.url}/api/v1/webhooks",
        json={"url": "http://127.0.0.1:9/x", "event_types": ["MandateCreated"]},
        headers=headers,
    )
    api.stop()
    assert response.status_code == 422
    assert "https" in response.json()["detail"]


async def test_one_subscriptions_jobs_spread_over_partitions(
    stack: System, tenant: Tenant, bank: Issuer
) -> None:
    """Jobs are keyed by event id, not by subscription: one busy subscription's deliveries use
    every partition (and so every worker replica)."""
    subscription = stack.subscribe(tenant, "/spread")
    for _ in range(16):
        stack.create_mandate(tenant, bank.mandate())
    stack.receiver.wait_for(lambda r: len(r.at("/spread")) == 16)
    consumer = AIOKafkaConsumer(
        stack.topic,
        bootstrap_servers=stack.bootstrap_servers,
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    partitions: set[int] = set()
    try:
        for _ in range(6):
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    job = json.loads(record.value)
                    if job["subscription_id"] == subscription["id"]:
                        assert record.key == job["event_id"].encode()
                        partitions.add(record.partition)
    finally:
        await consumer.stop()
    assert len(partitions) >= 2  # 16 events over 4 partitions: all in one is 1 in 4**15
