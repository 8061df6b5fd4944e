"""A subscriber down for 30 s while events flow, then recovered by the tenant through the api.

One tenant, one subscription, mandates created through the public api at a steady rate. For
30 s in the middle of the load the receiver is down: it drops every connection without
answering. Deliveries fail, and every event whose whole retry schedule falls inside the outage
is dead-lettered (the schedule is short and the circuit breaker's threshold high here, so the
outage exhausts attempts instead of parking jobs: the point is recovery, the breaker has its own
scenario). The receiver comes back; the retries still scheduled deliver by themselves; once
nothing is left scheduled the tenant calls `POST /api/v1/webhooks/{id}/recover` with the time
the load began. Expected:

- 100 % delivered: every event of the subscription ends `succeeded` in the delivery table;
- the receiver saw every webhook-id at least once, and after deduplicating by webhook-id it
  processed each event exactly once (one webhook-id per mandate, the same body each time);
- the recover call scheduled exactly the failed and dead-lettered events, and the outage did
  dead-letter some (otherwise recover was not exercised).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from mandate_vault_harness.load import CreateLoad, summarize
from mandate_vault_harness.metrics import scrape, value
from mandate_vault_harness.receiver import Receiver
from mandate_vault_harness.system import System, Tenant, server_errors
from reliability.core import Findings, Row, Scale, wait_until

NAME = "subscriber down 30 s, then recovered by the API"
PATH = "/outage"


def _states(system: System, subscription_id: str) -> dict[str, int]:
    rows = system.query(
        "SELECT status, count(*) AS n FROM webhook_deliveries WHERE subscription_id = $1 "
        "GROUP BY status",
        subscription_id,
    )
    return {row["status"]: int(row["n"]) for row in rows}


def _event_ids(system: System, subscription_id: str) -> set[str]:
    rows = system.query("SELECT event_id FROM outbox WHERE subscription_id = $1", subscription_id)
    return {row["event_id"] for row in rows}


def _processed(receiver: Receiver) -> dict[str, list[bytes]]:
    """webhook-id -> the bodies it arrived with (answered 2xx while the receiver was up)."""
    seen: dict[str, list[bytes]] = {}
    for delivery in receiver.at(PATH):
        if delivery.answered_at is not None:
            seen.setdefault(delivery.webhook_id, []).append(delivery.body)
    return seen


class _Plan:
    """The load around the outage, and the worker's settings."""

    def __init__(self, scale: Scale) -> None:
        self.rps = scale.pick(5.0, 10.0)
        self.before, self.outage, self.after = scale.pick((1.0, 5.0, 1.0), (5.0, 30.0, 5.0))
        self.count = int(self.rps * (self.before + self.outage + self.after))
        self.timeout = scale.pick(60.0, 300.0)
        self.worker_env = {
            # short enough that the outage exhausts early events' attempts (dead letters)
            "WORKER_RETRY_SCHEDULE_SECONDS": scale.pick("0.5,1", "1,2,4"),
            "WORKER_RETRY_JITTER": "0.2",
            "WORKER_BREAKER_FAILURE_THRESHOLD": "1000000",
        }


class _Outage:
    """Creates at a steady rate; the receiver down for the middle part of the load."""

    def __init__(self, system: System, tenant: Tenant, plan: _Plan) -> None:
        receiver = system.receiver
        issuer = system.issuers[0]
        self.since = datetime.now(UTC) - timedelta(seconds=1)
        load = CreateLoad(
            system.api.url, tenant.headers(), lambda _: issuer.mandate(), plan.rps, plan.count
        ).start()
        time.sleep(max(0.0, plan.before - load.elapsed()))
        receiver.down.set()
        self.processed_before = len(_processed(receiver))
        time.sleep(plan.outage)
        receiver.down.clear()
        self.ended_at = load.elapsed()
        self.answers = load.join(timeout=plan.before + plan.outage + plan.after + 60)
        self.created = {a.mandate_id for a in self.answers if a.mandate_id}


class _Settled:
    """Once no retry is left scheduled: where every delivery stands."""

    def __init__(self, system: System, subscription: str, created: int, timeout: float) -> None:
        started = time.monotonic()

        def settled() -> bool:
            states = _states(system, subscription)
            return states.get("retrying", 0) == 0 and sum(states.values()) >= created

        self.ok = wait_until(settled, timeout=timeout, interval=0.5)
        self.seconds = time.monotonic() - started
        self.states = _states(system, subscription)
        self.exhausted = self.states.get("dead_lettered", 0) + self.states.get("failed", 0)


class _Recovered:
    """The tenant's recover call, and everything that followed until all was delivered."""

    def __init__(
        self, system: System, tenant: Tenant, subscription: str, outage: _Outage, timeout: float
    ) -> None:
        receiver = system.receiver
        with httpx.Client(base_url=system.api.url, headers=tenant.headers(), timeout=30) as api:
            self.answer = api.post(
                f"/api/v1/webhooks/{subscription}/recover",
                json={"since": outage.since.isoformat()},
            )
        started = time.monotonic()
        wait_until(
            lambda: _states(system, subscription).get("succeeded", 0) >= len(outage.created),
            timeout=timeout,
            interval=0.5,
        )
        self.seconds = time.monotonic() - started
        self.states = _states(system, subscription)
        self.expected_ids = _event_ids(system, subscription)
        wait_until(lambda: self.expected_ids <= set(_processed(receiver)), timeout=10.0)
        self.processed = _processed(receiver)
        self.taken_up = value(
            scrape(system.workers[0].url), "webhook_redeliveries_total", kind="recover"
        )
        self.alive = all(p.running for p in [*system.apis, *system.workers])
        self.five_xx = server_errors(system.processes(), include_503=True)

    @property
    def scheduled(self) -> int | None:
        return int(self.answer.json()["scheduled"]) if self.answer.status_code == 202 else None


class _Receiver:
    """What the receiver saw, deduplicated by webhook-id."""

    def __init__(self, after: _Recovered) -> None:
        processed = after.processed
        mandates: dict[str, set[str]] = {}
        for webhook_id, bodies in processed.items():
            for body in bodies:
                mandates.setdefault(json.loads(body)["data"]["id"], set()).add(webhook_id)
        self.mandates = set(mandates)
        self.unseen = after.expected_ids - set(processed)
        self.mixed = [m for m, ids in mandates.items() if len(ids) > 1]
        self.changed = [w for w, bodies in processed.items() if len(set(bodies)) > 1]
        self.duplicates = sum(len(b) for b in processed.values()) - len(processed)


def _check(
    findings: Findings,
    plan: _Plan,
    outage: _Outage,
    settled: _Settled,
    after: _Recovered,
    seen: _Receiver,
) -> None:
    created = outage.created
    findings.check(len(created) == plan.count, f"creates failed: {summarize(outage.answers)}")
    findings.check(settled.ok, f"retries still scheduled long after the outage: {settled.states}")
    findings.check(settled.exhausted > 0, "the outage dead-lettered nothing: recover not exercised")
    findings.check(after.answer.status_code == 202, f"recover answered {after.answer.status_code}")
    findings.check(
        after.scheduled == settled.exhausted,
        f"recover scheduled {after.scheduled} of {settled.exhausted}",
    )
    findings.check(
        after.taken_up == settled.exhausted, f"the worker took up {after.taken_up} redeliveries"
    )
    findings.check(
        after.states == {"succeeded": len(created)}, f"delivery states after: {after.states}"
    )
    findings.check(len(after.expected_ids) == len(created), "not one event per created mandate")
    findings.check(not seen.unseen, f"{len(seen.unseen)} webhook-ids never reached the receiver")
    findings.check(seen.mandates == created, "processed mandates differ from the created ones")
    findings.check(not seen.mixed, f"{len(seen.mixed)} mandates under several webhook-ids")
    findings.check(not seen.changed, f"{len(seen.changed)} webhook-ids with different bodies")
    findings.check(after.alive, "the api or the worker died")
    findings.check(not after.five_xx, f"server errors: {after.five_xx}")


def _report(
    findings: Findings,
    plan: _Plan,
    outage: _Outage,
    settled: _Settled,
    after: _Recovered,
    seen: _Receiver,
) -> Row:
    delivered = round(100.0 * after.states.get("succeeded", 0) / max(len(outage.created), 1), 1)
    figures: dict[str, Any] = {
        "rate": plan.rps,
        "receiver_down_seconds": plan.outage,
        "processed_before_outage": outage.processed_before,
        "outage_ended_at_load_second": round(outage.ended_at, 1),
        "created": len(outage.created),
        "states_before_recover": settled.states,
        "seconds_until_settled": round(settled.seconds, 1),
        "recover_scheduled": after.scheduled,
        "seconds_recover_to_all_delivered": round(after.seconds, 1),
        "states_after_recover": after.states,
        "webhook_ids_seen": len(after.processed),
        "duplicate_requests_after_dedupe": seen.duplicates,
        "delivered_pct": delivered,
    }
    tried = (
        f"{len(outage.created)} creates at {plan.rps:.0f}/s, the receiver down (connections "
        f"dropped) for {plan.outage:.0f} s mid-load, then `POST /recover` since the start once "
        "retries settled"
    )
    leaked = (
        f"{settled.exhausted} events failed or dead-lettered by the outage, {after.scheduled} "
        f"recovered; {delivered} % delivered, {len(seen.unseen)} webhook-ids unseen, "
        f"{len(seen.mixed)} mandates under several ids, {seen.duplicates} duplicate requests "
        "(same id)"
    )
    return findings.row(NAME, tried, leaked, figures)


def run(scale: Scale) -> Row:
    plan = _Plan(scale)
    findings = Findings()
    with System(partitions=4) as system:
        system.start_api(wait=False)
        system.start_worker(wait=False, **plan.worker_env)
        system.ready()
        tenant = system.add_tenant()
        subscription = system.subscribe(tenant, PATH)["id"]
        outage = _Outage(system, tenant, plan)
        settled = _Settled(system, subscription, len(outage.created), plan.timeout)
        after = _Recovered(system, tenant, subscription, outage, plan.timeout)
    seen = _Receiver(after)
    _check(findings, plan, outage, settled, after, seen)
    return _report(findings, plan, outage, settled, after, seen)
