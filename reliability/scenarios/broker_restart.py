"""The Kafka-protocol broker SIGKILLed and restarted while mandates are being created.

The broker keeps its log and committed offsets in a local S3 (moto), as a real Kafka keeps them
on disk, so a kill is an outage rather than a wipe (tests/webhooks/test_broker_outage.py). It
can still lose records it had acknowledged (and break the consumer group's offsets) when killed
at the wrong moment, as a single-broker Kafka without replication can: the product must deliver
them anyway. While an open-loop load creates mandates for a subscribed tenant, the broker is
killed (SIGKILL), kept down for a few seconds, and started again on the same port; the api
reconciles (a published event the worker has not recorded after a grace of seconds is published
again) and the worker rebuilds its consumer if the group state broke.

Judged against the database, not the load's answers: every event the outbox holds for the
subscription (the events the product promised) must reach the receiver as a verified webhook
under its own webhook-id, every mandate answered 201 must have its event, and a mandate
delivered more than once must always carry the same webhook-id. Reported: events republished
by reconciliation and consumer rebuilds.
"""

from __future__ import annotations

import time
from typing import Any

from mandate_vault_harness.load import CreateLoad, summarize
from mandate_vault_harness.metrics import scrape, value
from mandate_vault_harness.system import (
    System,
    delivered_mandate_ids,
    error_causes,
    where_events_stopped,
)
from reliability.core import Findings, Row, Scale, wait_until

NAME = "broker killed and restarted"
PATH = "/broker-outage"


def _kill_and_restart(system: System, load: CreateLoad, kills: int, outage: float) -> list[Any]:
    """SIGKILL the broker `kills` times, spread over the load, each for `outage` seconds."""
    assert system.broker is not None
    duration = load.count / load.rps
    outages = []
    for n in range(kills):
        at = duration * (n + 1) / (kills + 1) - outage / 2  # each well inside the run
        time.sleep(max(0.0, at - load.elapsed()))
        process = system.broker._process
        assert process is not None
        process.kill()
        process.wait()
        system.broker._process = None
        killed_at = load.elapsed()
        time.sleep(outage)
        system.broker.start()
        outages.append((round(killed_at, 1), round(load.elapsed(), 1)))
    return outages


def _expected_events(system: System, subscription_id: str) -> dict[str, str]:
    """event id -> mandate id of every event the outbox holds for the subscription."""
    rows = system.query(
        "SELECT event_id, (payload::json -> 'data' ->> 'id') AS mandate_id FROM outbox "
        "WHERE subscription_id = $1",
        subscription_id,
    )
    return {row["event_id"]: row["mandate_id"] for row in rows}


def _received(system: System) -> dict[str, int]:
    """webhook-id -> verified deliveries the receiver got under it."""
    assert system.receiver is not None
    seen: dict[str, int] = {}
    for delivery in system.receiver.at(PATH):
        seen[delivery.webhook_id] = seen.get(delivery.webhook_id, 0) + 1
    return seen


def run(scale: Scale) -> Row:
    count, rps = scale.pick(60, 600), scale.pick(12.0, 15.0)
    kills, outage = scale.pick(1, 3), scale.pick(3.0, 6.0)
    grace = scale.pick(5, 10)  # above the worker's 2 s delivery timeout
    findings = Findings()
    with System(durable_broker=True) as system:
        system.start_api(
            wait=False,
            API_OUTBOX_RECONCILE_GRACE_SECONDS=str(grace),
            API_OUTBOX_RECONCILE_INTERVAL_SECONDS="1",
        )
        system.start_worker(wait=False, WORKER_CONSUMER_STALL_SECONDS=str(grace))
        system.ready()
        assert system.receiver is not None
        tenant = system.add_tenant()
        subscription = system.subscribe(tenant, PATH)
        issuer = system.issuers[0]
        load = CreateLoad(
            system.api.url, tenant.headers(), lambda _: issuer.mandate(), rps, count
        ).start()
        outages = _kill_and_restart(system, load, kills, outage)
        answers = load.join(timeout=count / rps + 120)
        created = {a.mandate_id for a in answers if a.mandate_id}
        expected = _expected_events(system, subscription["id"])

        def all_delivered() -> bool:
            return expected.keys() <= _received(system).keys()

        started_wait = time.monotonic()
        wait_until(all_delivered, timeout=scale.pick(90.0, 180.0), interval=0.5)
        waited = time.monotonic() - started_wait
        time.sleep(1.0)  # duplicates still in flight arrive
        received = _received(system)
        by_mandate = delivered_mandate_ids(system.receiver, PATH)
        lost = expected.keys() - received.keys()
        stuck = where_events_stopped(system, {expected[e] for e in lost})
        reconciled = value(scrape(system.api.url), "webhook_events_reconciled_total")
        rebuilds = value(scrape(system.workers[0].url), "kafka_consumer_rebuilds_total")
        invalid = len(system.receiver.invalid)
        alive = all(p.running for p in [*system.apis, *system.workers])
        causes = {c: n for c, n in error_causes(system.processes()).items() if "readyz" not in c}

    statuses = summarize(answers)
    non_201 = len(answers) - len(created)
    without_event = created - set(expected.values())
    unexpected = received.keys() - expected.keys()
    mixed_ids = {m: ids for m, ids in by_mandate.items() if len(ids) > 1}
    duplicates = sum(received.values()) - len(received)
    findings.check(
        non_201 == 0, f"{non_201} creates not answered 201 during the outage: {statuses}"
    )
    findings.check(not without_event, f"{len(without_event)} mandates stored without their event")
    findings.check(
        not lost, f"{len(lost)} of {len(expected)} events lost (e.g. {sorted(lost)[:3]})"
    )
    findings.check(not unexpected, f"{len(unexpected)} deliveries under unknown webhook-ids")
    findings.check(not mixed_ids, f"{len(mixed_ids)} mandates delivered under several webhook-ids")
    findings.check(invalid == 0, f"{invalid} deliveries failed signature verification")
    findings.check(alive, "a service process died")
    figures = {
        "creates": len(answers),
        "answers": statuses,
        "outages_s_from_start": outages,
        "events_expected_by_the_database": len(expected),
        "events_received": len(received.keys() & expected.keys()),
        "deliveries_including_duplicates": sum(received.values()),
        "lost": len(lost),
        "reconciled_republished": int(reconciled),
        "consumer_rebuilds": int(rebuilds),
        "reconcile_grace_s": grace,
        "seconds_to_drain_after_load": round(waited, 1),
        "lost_events_state": stuck,
        "logged_errors": causes,
    }
    tried = (
        f"{len(answers)} creates at {rps:.0f}/s; broker SIGKILLed {kills}x for {outage:.0f} s "
        f"each (durable S3 storage), restarted on the same port; reconciliation grace {grace} s"
    )
    leaked = (
        f"{len(lost)} of {len(expected)} events lost; {duplicates} duplicate deliveries, all "
        f"under the event's own webhook-id; {int(reconciled)} republished by reconciliation, "
        f"{int(rebuilds)} consumer rebuilds"
        if not mixed_ids
        else f"{len(lost)} lost; {len(mixed_ids)} mandates under several webhook-ids"
    )
    return findings.row(NAME, tried, leaked, figures)
