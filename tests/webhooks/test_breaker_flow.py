"""A failing endpoint opens its subscription's circuit breaker: new jobs are parked instead of
sent, a half-open probe tests the endpoint after the cooldown, and once it answers again the
breaker closes and every parked job arrives (none lost, none dead-lettered)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from mandate_vault_harness.issuer import Issuer
from mandate_vault_harness.metrics import scrape, value
from mandate_vault_harness.system import System, Tenant

THRESHOLD = 3
WORKER_OVERRIDES = {
    "WORKER_BREAKER_FAILURE_THRESHOLD": str(THRESHOLD),
    "WORKER_BREAKER_COOLDOWN_SECONDS": "1",
    "WORKER_RETRY_SCHEDULE_SECONDS": ",".join(["0.2"] * 30),  # no dead letters in this test
}


def _breaker_states(stack: System) -> list[str]:
    return [
        r["state"] for r in stack.workers[0].json_logs() if r["event"] == "webhook_circuit_breaker"
    ]


def test_breaker_opens_parks_half_opens_closes_and_parked_jobs_arrive(
    stack: System, tenant: Tenant, bank: Issuer
) -> None:
    down = True
    subscription = stack.subscribe(
        tenant, "/flaky", script=lambda _: (503, {}) if down else (204, {})
    )
    created = [stack.create_mandate(tenant, bank.mandate())["id"] for _ in range(THRESHOLD)]
    stack.receiver.wait_for(lambda r: "open" in _breaker_states(stack))
    with ThreadPoolExecutor(5) as pool:  # while the breaker is open (a probe at most)
        created += [
            m["id"]
            for m in pool.map(
                partial(stack.create_mandate, tenant), [bank.mandate() for _ in range(5)]
            )
        ]
    stack.receiver.wait_for(
        lambda r: (
            value(scrape(stack.workers[0].url), "webhook_jobs_parked_total", reason="breaker_open")
            >= 4
        )
    )
    # After the cooldown one probe goes out; it fails, so the breaker opens again.
    stack.receiver.wait_for(lambda r: _breaker_states(stack).count("open") >= 2)
    down = False
    stack.receiver.wait_for(lambda r: "closed" in _breaker_states(stack))

    def all_arrived(r: object) -> bool:
        ok = [d for d in stack.receiver.at("/flaky") if d.answered_at is not None]
        return {json.loads(d.body)["data"]["id"] for d in ok} >= set(created)

    stack.receiver.wait_for(all_arrived)
    states = _breaker_states(stack)
    assert states[:3] == ["open", "half_open", "open"]
    assert states[-1] == "closed"
    # While the breaker was open nothing was sent but the probes: the threshold's failures,
    # then one failed probe per re-opening.
    requests = stack.receiver.at("/flaky")
    delivered = {d.webhook_id for d in requests}
    failed = len(requests) - len(delivered)
    assert failed == THRESHOLD + states.count("open") - 1
    samples = scrape(stack.workers[0].url)
    assert value(samples, "webhook_circuit_breaker_transitions_total", state="open") >= 2
    assert value(samples, "webhook_circuit_breaker_transitions_total", state="closed") >= 1
    assert value(samples, "webhook_dead_letters_total") == 0
    with stack.client(tenant) as client:
        log = client.get(f"/api/v1/webhooks/{subscription['id']}/deliveries?limit=200").json()
    succeeded = {e["event_id"] for e in log if e["outcome"] == "succeeded"}
    assert succeeded == delivered
    assert len(succeeded) == len(created)
