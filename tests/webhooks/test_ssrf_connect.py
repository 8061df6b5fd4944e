"""The worker re-checks every URL when it connects: here its allow-list is empty while the api's
lets loopback through, so each delivery must be refused at connect time."""

from __future__ import annotations

import time

from mandate_vault_harness.issuer import Issuer
from mandate_vault_harness.system import System, Tenant

WORKER_OVERRIDES = {"WORKER_SSRF_ALLOWLIST": "", "WORKER_RETRY_SCHEDULE_SECONDS": "0.2"}


def test_blocked_addresses_are_refused_at_connect_time(
    stack: System, tenant: Tenant, bank: Issuer
) -> None:
    literal = stack.subscribe(tenant, "/literal")
    by_name = stack.subscribe(tenant, "/by-name")
    # Registered as a hostname that resolves to loopback (the api's allow-list permits it).
    with stack.client(tenant) as client:
        client.patch(
            f"/api/v1/webhooks/{by_name['id']}",
            json={"url": f"http://localhost:{stack.receiver.port}/by-name"},
        )
    stack.create_mandate(tenant, bank.mandate())
    for subscription in (literal, by_name):
        for _ in range(100):
            with stack.client(tenant) as client:
                log = client.get(f"/api/v1/webhooks/{subscription['id']}/deliveries").json()
            if len(log) == 2:
                break
            time.sleep(0.1)
        assert [entry["outcome"] for entry in reversed(log)] == ["retrying", "dead_lettered"]
        assert all(str(entry["error"]).startswith("refused:") for entry in log), log
        assert all(entry["status_code"] is None for entry in log)
    assert stack.receiver.received == []
    assert stack.receiver.invalid == []
