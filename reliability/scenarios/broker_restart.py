"""The Kafka-protocol broker SIGKILLed and restarted while mandates are being created.

The broker keeps its log and committed offsets in a local S3 (moto), as a real Kafka keeps them
on disk, so a kill is an outage rather than a wipe (tests/webhooks/test_broker_outage.py). While
an open-loop load creates mandates for a subscribed tenant, the broker is killed (SIGKILL), kept
down for a few seconds, and started again on the same port. Every mandate answered 201 must
reach the subscriber as a verified MandateCreated webhook; a mandate delivered more than once
must always carry the same webhook-id.
"""

from __future__ import annotations

import time

from mandate_vault_harness.load import CreateLoad, summarize
from mandate_vault_harness.system import (
    System,
    delivered_mandate_ids,
    error_causes,
    where_events_stopped,
)
from reliability.core import Findings, Row, Scale, wait_until

NAME = "broker killed and restarted"
PATH = "/broker-outage"


def run(scale: Scale) -> Row:  # noqa: PLR0915 - one scenario, read top to bottom
    count = scale.pick(60, 600)
    rps = scale.pick(12.0, 15.0)
    kills = scale.pick(1, 3)
    outage = scale.pick(3.0, 6.0)
    findings = Findings()
    with System(durable_broker=True) as system:
        system.start_api(wait=False)
        system.start_worker(wait=False)
        system.ready()
        assert system.broker is not None
        tenant = system.add_tenant()
        system.subscribe(tenant, PATH)
        issuer = system.issuers[0]
        load = CreateLoad(
            system.api.url, tenant.headers(), lambda _: issuer.mandate(), rps, count
        ).start()
        duration = count / rps
        outages = []
        for n in range(kills):
            # kills spread over the run, each well inside it
            at = duration * (n + 1) / (kills + 1) - outage / 2
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
        answers = load.join(timeout=duration + 120)
        created = {a.mandate_id for a in answers if a.mandate_id}

        def all_delivered() -> bool:
            return created <= delivered_mandate_ids(system.receiver, PATH).keys()  # type: ignore[arg-type]

        started_wait = time.monotonic()
        wait_until(all_delivered, timeout=scale.pick(90.0, 180.0), interval=0.5)
        waited = time.monotonic() - started_wait
        delivered = delivered_mandate_ids(system.receiver, PATH)
        lost = created - delivered.keys()
        mixed_ids = {m: ids for m, ids in delivered.items() if len(ids) > 1}
        deliveries = len(system.receiver.at(PATH))
        invalid = len(system.receiver.invalid)
        alive = all(p.running for p in [*system.apis, *system.workers])
        stuck = where_events_stopped(system, lost)
        causes = {c: n for c, n in error_causes(system.processes()).items() if "readyz" not in c}

    statuses = summarize(answers)
    non_201 = len(answers) - len(created)
    findings.check(
        non_201 == 0, f"{non_201} creates not answered 201 during the outage: {statuses}"
    )
    findings.check(not lost, f"{len(lost)} events lost (e.g. {sorted(lost)[:3]})")
    findings.check(not mixed_ids, f"{len(mixed_ids)} mandates delivered under several webhook-ids")
    findings.check(invalid == 0, f"{invalid} deliveries failed signature verification")
    findings.check(alive, "a service process died")
    figures = {
        "creates": len(answers),
        "answers": statuses,
        "outages_s_from_start": outages,
        "events_expected": len(created),
        "events_delivered": len(delivered),
        "deliveries_including_duplicates": deliveries,
        "lost": len(lost),
        "seconds_to_drain_after_load": round(waited, 1),
        "lost_events_state": stuck,
        "logged_errors": causes,
    }
    tried = (
        f"{len(answers)} creates at {rps:.0f}/s; broker SIGKILLed {kills}x for {outage:.0f} s "
        "each (durable S3 storage), restarted on the same port"
    )
    leaked = (
        f"{len(lost)} of {len(created)} events lost; {deliveries - len(delivered)} duplicate "
        "deliveries, all under one webhook-id"
        if not mixed_ids
        else f"{len(lost)} lost; {len(mixed_ids)} mandates under several webhook-ids"
    )
    return findings.row(NAME, tried, leaked, figures)
