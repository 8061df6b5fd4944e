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


def _start(system: System, rps: float, count: int) -> CreateLoad:
    """The api, two workers sharing the group, a subscribed tenant; the load, started."""
    system.start_api(wait=False)
    for _ in range(2):
        system.start_worker(wait=False)
    system.ready()
    tenant = system.add_tenant()
    system.subscribe(tenant, PATH)
    # A subscriber answering in 100 ms keeps ~6 deliveries in flight at 60/s, so every kill lands
    # mid-stream (at 5 ms a fast pipeline often had nothing outstanding when the kill came).
    system.receiver.delay_seconds = 0.1
    issuer = system.issuers[0]
    return CreateLoad(
        system.api.url, tenant.headers(), lambda _: issuer.mandate(), rps, count
    ).start()


def _kill_workers(system: System, load: CreateLoad, kills: int, rng: random.Random) -> list[int]:
    """SIGKILL a worker `kills` times over the load, each replaced by a fresh one.

    Returns the events created but not yet answered by the subscriber at each kill (> 0: it
    landed mid-stream).
    """
    duration = load.count / load.rps
    outstanding_at_kill = []
    for n in range(kills):
        at = duration * (n + 0.7) / kills
        time.sleep(max(0.0, at - load.elapsed()))
        answered = sum(1 for a in load.answers if a.status == 201)
        # an event is done once the subscriber has answered it (not when its request arrived:
        # the 100 ms it waits for the answer is when a kill forces a redelivery)
        received = system.receiver.at(PATH)
        done = len({d.webhook_id for d in received if d.answered_at is not None})
        outstanding_at_kill.append(answered - done)
        victim = rng.choice(system.workers)
        system.kill_worker(victim)
        system.start_worker(wait=False)
    return outstanding_at_kill


def _drain(system: System, created: set[str], timeout: float) -> float:
    """Seconds until every created mandate's event arrived (or `timeout`)."""
    receiver = system.receiver
    assert receiver is not None

    def mandates_seen() -> set[str]:
        return {json.loads(d.body)["data"]["id"] for d in receiver.at(PATH)}

    drain_started = time.monotonic()
    wait_until(lambda: created <= mandates_seen(), timeout=timeout, interval=1)
    return time.monotonic() - drain_started


class _Delivered:
    """What the subscriber received: per mandate its webhook-ids, per webhook-id its bodies."""

    def __init__(self, system: System) -> None:
        self.deliveries = system.receiver.at(PATH)
        self.invalid = len(system.receiver.invalid)
        self.by_mandate: dict[str, set[str]] = {}
        self.bodies: dict[str, set[bytes]] = {}
        for delivery in self.deliveries:
            mandate_id = json.loads(delivery.body)["data"]["id"]
            self.by_mandate.setdefault(mandate_id, set()).add(delivery.webhook_id)
            self.bodies.setdefault(delivery.webhook_id, set()).add(delivery.body)
        per_id = Counter(d.webhook_id for d in self.deliveries)
        self.duplicates = sum(n - 1 for n in per_id.values())
        self.several_ids = [m for m, ids in self.by_mandate.items() if len(ids) > 1]
        self.changed_body = [w for w, b in self.bodies.items() if len(b) > 1]


def _check_deliveries(findings: Findings, created: set[str], delivered: _Delivered) -> set[str]:
    """Every event arrived, each under one webhook-id with one signed body; returns the lost."""
    lost = created - delivered.by_mandate.keys()
    findings.check(not lost, f"{len(lost)} events lost")
    findings.check(
        not delivered.several_ids,
        f"{len(delivered.several_ids)} mandates delivered under 2+ webhook-ids",
    )
    findings.check(
        not delivered.changed_body,
        f"{len(delivered.changed_body)} webhook-ids with different bodies",
    )
    findings.check(
        delivered.invalid == 0, f"{delivered.invalid} deliveries with an invalid signature"
    )
    return lost


def run(scale: Scale) -> Row:
    count = scale.pick(500, 5000)
    kills = scale.pick(2, 5)
    rps = scale.pick(60.0, 60.0)
    findings = Findings()
    rng = random.Random(20261127)  # noqa: S311 - a seeded choice of victim, not a secret
    with System(partitions=4) as system:
        load = _start(system, rps, count)
        outstanding_at_kill = _kill_workers(system, load, kills, rng)
        answers = load.join(timeout=count / rps + 120)
        created = {a.mandate_id for a in answers if a.mandate_id}
        drain = _drain(system, created, timeout=scale.pick(90.0, 240.0))
        delivered = _Delivered(system)
        alive = all(p.running for p in [*system.apis, *system.workers])
        five_xx = server_errors(system.processes(), include_503=True)

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
    lost = _check_deliveries(findings, created, delivered)
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
        "events_delivered": len(delivered.by_mandate),
        "deliveries": len(delivered.deliveries),
        "duplicate_deliveries": delivered.duplicates,
        "lost": len(lost),
        "server_errors": five_xx,
        "seconds_to_drain_after_load": round(drain, 1),
    }
    tried = (
        f"{len(created)} webhooks (creates at {rps:.0f}/s through the api), 2 workers, "
        f"{kills} SIGKILLs mid-stream, each followed by a fresh worker"
    )
    leaked = (
        f"{len(lost)} lost; {delivered.duplicates} duplicate deliveries, "
        + (f"{len(refused)} creates refused 503 (nothing stored), " if refused else "")
        + f"{'all' if not delivered.several_ids else 'NOT all'} under the same webhook-id and body"
    )
    return findings.row(NAME, tried, leaked, figures)
