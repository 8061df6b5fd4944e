"""A slow subscriber never holds back another, even when their jobs share one partition.

The slow endpoint holds every request until the test opens its gate, so "every fast delivery
arrives before the slow endpoint's first response returns" is an order of events, not a timing:
if the fast deliveries waited behind the slow ones they would never arrive while the gate is
shut. Its window is 4 here: the rest of its jobs are parked in the delivery table and arrive
once it answers.
"""

from __future__ import annotations

import json

from mandate_vault_harness.issuer import Issuer
from mandate_vault_harness.metrics import scrape, value
from mandate_vault_harness.system import System, Tenant

TOPIC_PARTITIONS = 1
WINDOW = 4
WORKER_OVERRIDES = {
    "WORKER_SUBSCRIPTION_WINDOW": str(WINDOW),
    "WORKER_DELIVERY_TIMEOUT_SECONDS": "60",
}
MANDATES = 12


def test_a_slow_subscriber_never_delays_a_fast_one_on_the_same_partition(
    stack: System, tenant: Tenant, bank: Issuer
) -> None:
    gate = stack.receiver.hold("/slow")
    slow = stack.subscribe(tenant, "/slow")
    stack.subscribe(tenant, "/fast")
    created = [stack.create_mandate(tenant, bank.mandate())["id"] for _ in range(MANDATES)]
    try:
        stack.receiver.wait_for(lambda r: len(r.at("/fast")) == MANDATES)
        fast = stack.receiver.at("/fast")
        held = stack.receiver.at("/slow")
        assert all(d.answered_at is None for d in held)  # not one slow answer went out yet
        assert len(held) <= WINDOW  # its window, no more
        stack.receiver.wait_for(lambda r: _parked(stack) >= MANDATES - WINDOW)
    finally:
        gate.set()
    stack.receiver.wait_for(lambda r: len({d.webhook_id for d in r.at("/slow")}) == MANDATES)
    first_slow_answer = min(d.answered_at or 0.0 for d in stack.receiver.at("/slow"))
    assert max(d.at for d in fast) < first_slow_answer
    assert {json.loads(d.body)["data"]["id"] for d in fast} == set(created)
    assert {json.loads(d.body)["data"]["id"] for d in stack.receiver.at("/slow")} == set(created)
    with stack.client(tenant) as client:
        log = client.get(f"/api/v1/webhooks/{slow['id']}/deliveries").json()
    assert sorted(entry["outcome"] for entry in log) == ["succeeded"] * MANDATES


def _parked(stack: System) -> float:
    samples = scrape(stack.workers[0].url)
    return value(samples, "webhook_jobs_parked_total", reason="window_full")
