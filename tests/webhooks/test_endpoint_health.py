"""Endpoint health end to end: an endpoint that fails every attempt for the window (2 s here,
5 days by default) is disabled with a reason; the tenant's other subscription that chose
`endpoint.disabled` hears of it, the disabled one never does; what it misses is recorded, and
after re-enabling, recover delivers it."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from mandate_vault_harness.issuer import Issuer
from mandate_vault_harness.metrics import scrape, value
from mandate_vault_harness.receiver import Script
from mandate_vault_harness.system import System, Tenant

API_OVERRIDES = {"API_WEBHOOK_DISABLE_AFTER_SECONDS": "2"}


def subscription(stack: System, tenant: Tenant, subscription_id: str) -> dict[str, Any]:
    with stack.client(tenant) as client:
        return dict(client.get(f"/api/v1/webhooks/{subscription_id}").json())


def wait_until(check: Any, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError("condition not met")


def bodies(stack: System, path: str) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in stack.receiver.at(path)]


def check_disabled_and_announced(stack: System, tenant: Tenant, down: str) -> None:
    """Disabled with a reason; the notice reaches the other subscription; counted."""
    disabled = wait_until(
        lambda: (s := subscription(stack, tenant, down)) and not s["enabled"] and s
    )
    assert disabled["disabled_reason"].startswith("endpoint failing")
    assert disabled["failing_since"] is not None
    stack.receiver.wait_for(lambda r: len(r.at("/ops")) == 1)
    (notice,) = bodies(stack, "/ops")
    assert notice["type"] == "endpoint.disabled"
    assert notice["data"]["subscription_id"] == down
    assert notice["data"]["reason"] == disabled["disabled_reason"]
    assert isinstance(notice["sequence"], int)
    samples = scrape(stack.api.url)
    assert value(samples, "webhook_endpoints_disabled_total", service="mandate-vault-api") == 1


def check_missed_while_disabled(client: httpx.Client, down: str) -> None:
    """Nothing is sent while disabled, but the missed event is recorded (failed, unattempted)."""

    def missed() -> list[dict[str, Any]]:
        found = client.get(f"/api/v1/webhooks/{down}/events", params={"status": "failed"})
        return [e for e in found.json() if e["attempts"] == 0]

    (skipped,) = wait_until(missed)
    assert "disabled" in skipped["last_error"]


def enable_and_recover(client: httpx.Client, down: str, since: datetime) -> httpx.Response:
    """Re-enabled: resumes, health judged anew; recover schedules what was missed."""
    enabled = client.patch(f"/api/v1/webhooks/{down}", json={"enabled": True}).json()
    assert (enabled["enabled"], enabled["disabled_reason"], enabled["failing_since"]) == (
        True,
        None,
        None,
    )
    return client.post(f"/api/v1/webhooks/{down}/recover", json={"since": since.isoformat()})


def test_a_failing_endpoint_is_disabled_then_enabled_and_recovered(
    stack: System, tenant: Tenant, bank: Issuer
) -> None:
    started = datetime.now(UTC) - timedelta(seconds=1)
    state = {"up": False}
    script: Script = lambda _: (204, {}) if state["up"] else (503, {})  # noqa: E731
    events = ["MandateCreated", "endpoint.disabled"]
    down = stack.subscribe(tenant, "/down", events, script=script)["id"]
    stack.subscribe(tenant, "/ops", ["endpoint.disabled"])
    first = stack.create_mandate(tenant, bank.mandate())["id"]
    check_disabled_and_announced(stack, tenant, down)

    second = stack.create_mandate(tenant, bank.mandate())["id"]
    with stack.client(tenant) as client:
        check_missed_while_disabled(client, down)
        attempted = {json.loads(r.body)["data"].get("id") for r in stack.receiver.at("/down")}
        assert attempted == {first}
        state["up"] = True
        recovered = enable_and_recover(client, down, started)
    assert recovered.status_code == 202, recovered.text
    assert recovered.json()["scheduled"] == 2

    def both_delivered() -> bool:
        with stack.client(tenant) as client:
            found = client.get(f"/api/v1/webhooks/{down}/events").json()
        return len(found) == 2 and {e["status"] for e in found} == {"succeeded"}

    wait_until(both_delivered)
    after = [json.loads(r.body)["data"]["id"] for r in stack.receiver.at("/down")[-2:]]
    assert sorted(after) == sorted([first, second])
    assert all(b["type"] == "MandateCreated" for b in bodies(stack, "/down"))  # never the notice
    assert len(bodies(stack, "/ops")) == 1
    assert wait_until(lambda: subscription(stack, tenant, down)["failing_since"] is None)
