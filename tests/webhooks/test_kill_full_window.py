"""SIGKILL the worker while its whole window is in flight: after a restart every event arrives,
and a duplicate is always the same event under the same webhook-id with the same body."""

from __future__ import annotations

import json
from collections import Counter

from mandate_vault_harness.issuer import Issuer
from mandate_vault_harness.system import System, Tenant

WINDOW = 8
WORKER_OVERRIDES = {
    "WORKER_MAX_IN_FLIGHT": str(WINDOW),
    "WORKER_SUBSCRIPTION_WINDOW": str(WINDOW),
    "WORKER_DELIVERY_TIMEOUT_SECONDS": "60",
    "WORKER_COMMIT_INTERVAL_SECONDS": "0.1",
}
MANDATES = 30


def test_sigkill_with_a_full_window_loses_nothing(
    stack: System, tenant: Tenant, bank: Issuer
) -> None:
    stack.subscribe(tenant, "/before")
    stack.create_mandate(tenant, bank.mandate())  # some offsets committed before the kill
    stack.receiver.wait_for(lambda r: len(r.at("/before")) == 1)
    gate = stack.receiver.hold("/window")
    stack.subscribe(tenant, "/window")
    created = [stack.create_mandate(tenant, bank.mandate())["id"] for _ in range(MANDATES)]
    stack.receiver.wait_for(lambda r: len(r.held("/window")) == WINDOW)
    worker = stack.workers.pop()
    worker.kill()  # eight requests in flight, the rest fetched or waiting in Kafka
    gate.set()
    stack.start_worker()

    def all_arrived(r: object) -> bool:
        answered = [d for d in stack.receiver.at("/window") if d.answered_at is not None]
        return {json.loads(d.body)["data"]["id"] for d in answered} >= set(created)

    stack.receiver.wait_for(all_arrived, timeout=60)
    deliveries = stack.receiver.at("/window")
    by_mandate: dict[str, set[str]] = {}
    bodies: dict[str, set[bytes]] = {}
    for delivery in deliveries:
        by_mandate.setdefault(json.loads(delivery.body)["data"]["id"], set()).add(
            delivery.webhook_id
        )
        bodies.setdefault(delivery.webhook_id, set()).add(delivery.body)
    assert set(by_mandate) == set(created)
    assert all(len(ids) == 1 for ids in by_mandate.values())  # duplicates: same webhook-id
    assert all(len(b) == 1 for b in bodies.values())  # ... and the same signed body
    assert not stack.receiver.invalid
    duplicates = Counter(d.webhook_id for d in deliveries)
    assert sum(n - 1 for n in duplicates.values()) >= 1  # the held ones came again
