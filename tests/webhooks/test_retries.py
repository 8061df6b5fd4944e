"""Retries on the configured schedule (0.5 s, 1 s here), dead letters, 410, 3xx, Retry-After."""

from __future__ import annotations

import itertools
import json

from mandate_vault_harness.issuer import Issuer
from mandate_vault_harness.kafka import dead_letters, headers_of
from mandate_vault_harness.metrics import scrape, value
from mandate_vault_harness.receiver import Script, always
from mandate_vault_harness.system import System, Tenant


def deliveries_log(stack: System, tenant: Tenant, subscription_id: str) -> list[dict[str, object]]:
    with stack.client(tenant) as client:
        return list(reversed(client.get(f"/api/v1/webhooks/{subscription_id}/deliveries").json()))


async def test_failing_subscriber_is_retried_on_schedule_then_dead_lettered(
    stack: System, tenant: Tenant, bank: Issuer
) -> None:
    subscription = stack.subscribe(tenant, "/flaky", script=always(500))
    stack.create_mandate(tenant, bank.mandate())
    stack.receiver.wait_for(lambda r: len(r.at("/flaky")) == 3, timeout=20)
    times = [delivery.at for delivery in stack.receiver.at("/flaky")]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert 0.45 <= gaps[0] < 1.5, gaps  # schedule: 0.5 s (jitter off), polled every 0.1 s
    assert 0.95 <= gaps[1] < 2.0, gaps  # then 1 s
    ids = {delivery.webhook_id for delivery in stack.receiver.at("/flaky")}
    assert len(ids) == 1  # every attempt carries the same webhook-id

    (record,) = [
        r
        for r in await dead_letters(stack.bootstrap_servers, f"{stack.topic}.dlq", 1)
        if json.loads(r.value)["event_id"] in ids
    ]
    headers = headers_of(record)
    assert headers["dlq-original-topic"] == stack.topic
    assert int(headers["dlq-original-partition"]) in range(4)
    assert int(headers["dlq-original-offset"]) >= 0
    assert headers["dlq-last-error"] == "HTTP 500"
    assert headers["dlq-attempts"] == "3"
    assert headers["event-type"] == "MandateCreated"
    assert headers["traceparent"].startswith("00-")

    log = deliveries_log(stack, tenant, subscription["id"])
    assert [entry["outcome"] for entry in log] == ["retrying", "retrying", "dead_lettered"]
    assert [entry["attempt"] for entry in log] == [1, 2, 3]
    assert {entry["status_code"] for entry in log} == {500}
    samples = scrape(stack.workers[0].url)
    assert value(samples, "webhook_dead_letters_total", event_type="MandateCreated") >= 1
    assert value(samples, "webhook_deliveries_total", status="failed") >= 3


def test_gone_disables_the_subscription(stack: System, tenant: Tenant, bank: Issuer) -> None:
    subscription = stack.subscribe(tenant, "/gone", script=always(410))
    stack.create_mandate(tenant, bank.mandate())
    stack.receiver.wait_for(lambda r: len(r.at("/gone")) == 1)
    with stack.client(tenant) as client:
        for _ in range(50):
            current = client.get(f"/api/v1/webhooks/{subscription['id']}").json()
            if not current["enabled"]:
                break
    assert current["enabled"] is False
    assert "410" in current["disabled_reason"]
    stack.create_mandate(tenant, bank.mandate())
    stack.subscribe(tenant, "/after-gone")  # a marker: once it has its event, /gone would have too
    stack.create_mandate(tenant, bank.mandate())
    stack.receiver.wait_for(lambda r: len(r.at("/after-gone")) == 1)
    assert len(stack.receiver.at("/gone")) == 1  # never retried, nothing more sent
    assert [e["outcome"] for e in deliveries_log(stack, tenant, subscription["id"])] == ["failed"]


def test_redirects_are_failures_and_never_followed(
    stack: System, tenant: Tenant, bank: Issuer
) -> None:
    subscription = stack.subscribe(
        tenant, "/moved", script=always(302, {"Location": stack.receiver.url("/redirect-target")})
    )
    stack.receiver.register("/redirect-target", "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
    stack.create_mandate(tenant, bank.mandate())
    stack.receiver.wait_for(lambda r: len(r.at("/moved")) == 3, timeout=20)
    assert stack.receiver.at("/redirect-target") == []
    assert stack.receiver.invalid == [] or all(
        r.path != "/redirect-target" for r in stack.receiver.invalid
    )
    log = deliveries_log(stack, tenant, subscription["id"])
    assert {entry["status_code"] for entry in log} == {302}
    assert "redirects are not followed" in str(log[0]["error"])


def test_retry_after_is_honoured(stack: System, tenant: Tenant, bank: Issuer) -> None:
    busy: Script = lambda attempt: (503, {"Retry-After": "2"}) if attempt == 1 else (204, {})  # noqa: E731
    subscription = stack.subscribe(tenant, "/busy", script=busy)
    stack.create_mandate(tenant, bank.mandate())
    stack.receiver.wait_for(lambda r: len(r.at("/busy")) == 2, timeout=20)
    first, second = stack.receiver.at("/busy")
    assert second.at - first.at >= 1.95  # not the 0.5 s of the schedule
    assert [e["outcome"] for e in deliveries_log(stack, tenant, subscription["id"])] == [
        "retrying",
        "succeeded",
    ]
