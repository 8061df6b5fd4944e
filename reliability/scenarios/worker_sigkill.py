"""The webhook-worker SIGKILLed again and again while thousands of webhooks are delivered.

Mandates are created through the public api at a steady rate for a tenant with one
subscription, so every delivery runs the whole path (outbox, relay, Kafka, worker, signed POST).
Two workers share the consumer group; at evenly spread moments one of them (seeded choice) is
SIGKILLed mid-stream and a fresh one started, forcing rebalances and redelivery from the last
committed offsets. Expected: every created mandate's event arrives (verified signature), and a
duplicate is always the same event under the same webhook-id with the same signed body.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter

from mandate_vault_harness.load import CreateLoad, summarize
from mandate_vault_harness.system import System, server_errors
from reliability.core import Findings, Row, Scale, wait_until

NAME = "webhook-worker SIGKILLed during delivery"
PATH = "/sigkill"


def run(scale: Scale) -> Row:  # noqa: PLR0915 - one scenario, read top to bottom
    count = scale.pick(500, 5000)
    kills = scale.pick(2, 5)
    rps = scale.pick(60.0, 60.0)
    findings = Findings()
    rng = random.Random(20261127)  # noqa: S311 - a seeded choice of victim, not a secret
    with System(partitions=4) as system:
        system.start_api(wait=False)
        for _ in range(2):
            system.start_worker(wait=False)
        system.ready()
        receiver = system.receiver
        tenant = system.add_tenant()
        system.subscribe(tenant, PATH)
        receiver.delay_seconds = 0.005  # a subscriber that takes its time keeps work in flight
        issuer = system.issuers[0]
        load = CreateLoad(
            system.api.url, tenant.headers(), lambda _: issuer.mandate(), rps, count
        ).start()
        duration = count / rps
        outstanding_at_kill = []
        for n in range(kills):
            at = duration * (n + 0.7) / kills
            time.sleep(max(0.0, at - load.elapsed()))
            answered = sum(1 for a in load.answers if a.status == 201)
            arrived = len({d.webhook_id for d in receiver.at(PATH)})
            outstanding_at_kill.append(answered - arrived)
            victim = rng.choice(system.workers)
            system.kill_worker(victim)
            system.start_worker(wait=False)
        answers = load.join(timeout=duration + 120)
        created = {a.mandate_id for a in answers if a.mandate_id}

        def mandates_seen() -> set[str]:
            return {json.loads(d.body)["data"]["id"] for d in receiver.at(PATH)}

        drain_started = time.monotonic()
        wait_until(lambda: created <= mandates_seen(), timeout=scale.pick(90.0, 240.0), interval=1)
        drain = time.monotonic() - drain_started
        deliveries = receiver.at(PATH)
        invalid = len(receiver.invalid)
        alive = all(p.running for p in [*system.apis, *system.workers])
        five_xx = server_errors(system.processes(), include_503=True)

    by_mandate: dict[str, set[str]] = {}
    bodies: dict[str, set[bytes]] = {}
    for delivery in deliveries:
        mandate_id = json.loads(delivery.body)["data"]["id"]
        by_mandate.setdefault(mandate_id, set()).add(delivery.webhook_id)
        bodies.setdefault(delivery.webhook_id, set()).add(delivery.body)
    lost = created - by_mandate.keys()
    several_ids = [m for m, ids in by_mandate.items() if len(ids) > 1]
    changed_body = [w for w, b in bodies.items() if len(b) > 1]
    per_id = Counter(d.webhook_id for d in deliveries)
    duplicates = sum(n - 1 for n in per_id.values())
    statuses = summarize(answers)
    # a create refused with 503 + Retry-After stored nothing and emits nothing: not a loss, but
    # it is reported; anything else is a failure
    refused = [a for a in answers if a.status == 503 and a.retry_after]
    findings.check(
        len(created) + len(refused) == len(answers), f"creates not answered 201/503: {statuses}"
    )
    for cause, n in five_xx.items():
        if " 503 " not in cause:
            findings.check(False, f"server error: {cause} (x{n})")
    findings.check(not lost, f"{len(lost)} events lost")
    findings.check(not several_ids, f"{len(several_ids)} mandates delivered under 2+ webhook-ids")
    findings.check(not changed_body, f"{len(changed_body)} webhook-ids with different bodies")
    findings.check(invalid == 0, f"{invalid} deliveries with an invalid signature")
    findings.check(
        sum(1 for n in outstanding_at_kill if n > 0) >= kills - 1,
        f"kills did not land mid-stream (outstanding events at each: {outstanding_at_kill})",
    )
    findings.check(alive, "the api or a surviving worker died")
    figures = {
        "creates": len(answers),
        "answers": statuses,
        "kills": kills,
        "outstanding_events_at_each_kill": outstanding_at_kill,
        "events_delivered": len(by_mandate),
        "deliveries": len(deliveries),
        "duplicate_deliveries": duplicates,
        "lost": len(lost),
        "server_errors": five_xx,
        "seconds_to_drain_after_load": round(drain, 1),
    }
    tried = (
        f"{len(created)} webhooks (creates at {rps:.0f}/s through the api), 2 workers, "
        f"{kills} SIGKILLs mid-stream, each followed by a fresh worker"
    )
    leaked = (
        f"{len(lost)} lost; {duplicates} duplicate deliveries, "
        + (f"{len(refused)} creates refused 503 (nothing stored), " if refused else "")
        + f"{'all' if not several_ids else 'NOT all'} under the same webhook-id and body"
    )
    return findings.row(NAME, tried, leaked, figures)
