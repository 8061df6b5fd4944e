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
from tests.fixtures.metrics import scrape, value
from tests.fixtures.receiver import Receiver

from reliability.core import Findings, Row, Scale, wait_until
from reliability.load import CreateLoad, summarize
from reliability.stack import System, server_errors

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


def _outage(
    load: CreateLoad, receiver: Receiver, before: float, outage: float
) -> tuple[int, float]:
    """Take the receiver down `before` s into the load for `outage` s; returns how many events
    it had processed by then and when (load seconds) the outage ended."""
    time.sleep(max(0.0, before - load.elapsed()))
    receiver.down.set()
    processed = len(_processed(receiver))
    time.sleep(outage)
    receiver.down.clear()
    return processed, load.elapsed()


def run(scale: Scale) -> Row:  # noqa: PLR0915 - one scenario, read top to bottom
    rps = scale.pick(5.0, 10.0)
    before, outage, after = scale.pick((1.0, 5.0, 1.0), (5.0, 30.0, 5.0))
    count = int(rps * (before + outage + after))
    findings = Findings()
    worker_env = {
        # short enough that the outage exhausts early events' attempts (dead letters)
        "WORKER_RETRY_SCHEDULE_SECONDS": scale.pick("0.5,1", "1,2,4"),
        "WORKER_RETRY_JITTER": "0.2",
        "WORKER_BREAKER_FAILURE_THRESHOLD": "1000000",
    }
    with System(partitions=4) as system:
        system.start_api(wait=False)
        system.start_worker(wait=False, **worker_env)
        system.ready()
        assert system.receiver is not None
        receiver = system.receiver
        tenant = system.add_tenant()
        subscription = system.subscribe(tenant, PATH)["id"]
        issuer = system.issuers[0]
        since = datetime.now(UTC) - timedelta(seconds=1)
        load = CreateLoad(
            system.api.url, tenant.headers(), lambda _: issuer.mandate(), rps, count
        ).start()
        before_outage, outage_ended = _outage(load, receiver, before, outage)
        answers = load.join(timeout=before + outage + after + 60)
        created = {a.mandate_id for a in answers if a.mandate_id}
        settle_started = time.monotonic()
        settled = wait_until(
            lambda: (
                _states(system, subscription).get("retrying", 0) == 0
                and sum(_states(system, subscription).values()) >= len(created)
            ),
            timeout=scale.pick(60.0, 300.0),
            interval=0.5,
        )
        settle_seconds = time.monotonic() - settle_started
        before_recover = _states(system, subscription)
        with httpx.Client(base_url=system.api.url, headers=tenant.headers(), timeout=30) as api:
            recovered = api.post(
                f"/api/v1/webhooks/{subscription}/recover", json={"since": since.isoformat()}
            )
        recover_started = time.monotonic()
        wait_until(
            lambda: _states(system, subscription).get("succeeded", 0) >= len(created),
            timeout=scale.pick(60.0, 300.0),
            interval=0.5,
        )
        recover_seconds = time.monotonic() - recover_started
        final = _states(system, subscription)
        expected_ids = _event_ids(system, subscription)
        wait_until(lambda: expected_ids <= set(_processed(receiver)), timeout=10.0)
        processed = _processed(receiver)
        redeliveries = value(
            scrape(system.workers[0].url), "webhook_redeliveries_total", kind="recover"
        )
        alive = all(p.running for p in [*system.apis, *system.workers])
        five_xx = server_errors(system.processes(), include_503=True)

    mandates: dict[str, set[str]] = {}
    for webhook_id, bodies in processed.items():
        for body in bodies:
            mandates.setdefault(json.loads(body)["data"]["id"], set()).add(webhook_id)
    unseen = expected_ids - set(processed)
    mixed = [m for m, ids in mandates.items() if len(ids) > 1]
    changed = [w for w, bodies in processed.items() if len(set(bodies)) > 1]
    exhausted = before_recover.get("dead_lettered", 0) + before_recover.get("failed", 0)
    scheduled = recovered.json().get("scheduled") if recovered.status_code == 202 else None
    duplicates = sum(len(b) for b in processed.values()) - len(processed)

    findings.check(len(created) == count, f"creates failed: {summarize(answers)}")
    findings.check(settled, f"retries still scheduled long after the outage: {before_recover}")
    findings.check(exhausted > 0, "the outage dead-lettered nothing: recover was not exercised")
    findings.check(
        recovered.status_code == 202, f"recover answered {recovered.status_code} {recovered.text}"
    )
    findings.check(scheduled == exhausted, f"recover scheduled {scheduled} of {exhausted}")
    findings.check(redeliveries == exhausted, f"worker took up {redeliveries} redeliveries")
    findings.check(final == {"succeeded": len(created)}, f"delivery states after recover: {final}")
    findings.check(len(expected_ids) == len(created), f"{len(expected_ids)} events queued")
    findings.check(not unseen, f"{len(unseen)} webhook-ids never reached the receiver")
    findings.check(set(mandates) == created, "processed mandates differ from the created ones")
    findings.check(not mixed, f"{len(mixed)} mandates arrived under several webhook-ids")
    findings.check(not changed, f"{len(changed)} webhook-ids arrived with different bodies")
    findings.check(alive, "the api or the worker died")
    findings.check(not five_xx, f"server errors: {five_xx}")
    figures: dict[str, Any] = {
        "rate": rps,
        "receiver_down_seconds": outage,
        "processed_before_outage": before_outage,
        "outage_ended_at_load_second": round(outage_ended, 1),
        "created": len(created),
        "states_before_recover": before_recover,
        "seconds_until_settled": round(settle_seconds, 1),
        "recover_scheduled": scheduled,
        "seconds_recover_to_all_delivered": round(recover_seconds, 1),
        "states_after_recover": final,
        "webhook_ids_seen": len(processed),
        "duplicate_requests_after_dedupe": duplicates,
        "delivered_pct": round(100.0 * final.get("succeeded", 0) / max(len(created), 1), 1),
    }
    tried = (
        f"{len(created)} creates at {rps:.0f}/s, the receiver down (connections dropped) for "
        f"{outage:.0f} s mid-load, then `POST /recover` since the start once retries settled"
    )
    leaked = (
        f"{exhausted} events failed or dead-lettered by the outage, {scheduled} recovered; "
        f"{figures['delivered_pct']} % delivered, {len(unseen)} webhook-ids unseen, "
        f"{len(mixed)} mandates under several ids, {duplicates} duplicate requests (same id)"
    )
    return findings.row(NAME, tried, leaked, figures)
