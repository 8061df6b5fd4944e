"""Slow, failing and timing-out subscribers beside healthy ones: nobody waits for them.

Five tenants, one subscription each, all created at the same steady rate through the public
api while one worker delivers: two healthy endpoints, one that answers only after a few
seconds (healthy but slow), one that answers 503 and one that never answers (each attempt
times out) until they "recover" after the load. Expected:

- the healthy tenants' webhooks all arrive by the end of the load (plus a few seconds), at a
  p99 comparable to an idle system: the others' windows and breakers hold them back, not the
  healthy ones;
- the failing and timing-out subscriptions' circuit breakers open, their jobs are parked in the
  delivery table (no attempt burnt on them while the breaker is open), and once the endpoints
  recover the breakers close and every parked job arrives;
- nothing is lost or dead-lettered, every delivery of an event carries one webhook-id.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from mandate_vault_harness.load import CreateLoad, summarize
from mandate_vault_harness.metrics import scrape, value
from mandate_vault_harness.receiver import Receiver
from mandate_vault_harness.system import System, Tenant, server_errors
from reliability.core import Findings, Row, Scale, wait_until

NAME = "slow and failing subscribers"
KINDS = ("healthy-1", "healthy-2", "slow", "failing", "timeout")
HEALTHY = ("healthy-1", "healthy-2")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(int(q * len(ordered)), len(ordered) - 1)], 1) if ordered else -1.0


def _succeeded(system: System, subscriptions: dict[str, str]) -> dict[str, dict[str, int]]:
    """Delivery states per kind of subscriber, from the delivery table (the truth)."""
    rows = system.query(
        "SELECT subscription_id, status, count(*) AS n FROM webhook_deliveries "
        "GROUP BY subscription_id, status"
    )
    by_id = {sid: kind for kind, sid in subscriptions.items()}
    states: dict[str, dict[str, int]] = {kind: {} for kind in subscriptions}
    for row in rows:
        kind = by_id.get(row["subscription_id"])
        if kind is not None:
            states[kind][row["status"]] = int(row["n"])
    return states


def _endpoints(receiver: Receiver, paths: dict[str, str], slow_seconds: float) -> threading.Event:
    """Make the unhealthy endpoints unhealthy; returns the switch that makes them recover."""
    recovered = threading.Event()
    receiver.slow(paths["slow"], slow_seconds)
    receiver.scripts[paths["failing"]] = lambda _: (204, {}) if recovered.is_set() else (503, {})
    receiver.gates[paths["timeout"]] = recovered  # held past the worker's timeout until then
    return recovered


def run(scale: Scale) -> Row:  # noqa: PLR0915 - one scenario, read top to bottom
    rps = scale.pick(4.0, 15.0)  # per tenant
    seconds = scale.pick(8.0, 60.0)
    slow_seconds = scale.pick(1.0, 5.0)
    findings = Findings()
    worker_env = {
        "WORKER_DELIVERY_TIMEOUT_SECONDS": str(scale.pick(2, 8)),
        "WORKER_BREAKER_COOLDOWN_SECONDS": str(scale.pick(1.0, 5.0)),
        # long enough that the outage exhausts no event's attempts: nothing is dead-lettered
        "WORKER_RETRY_SCHEDULE_SECONDS": "1,2,4,8,16,32,64,128",
        "WORKER_RETRY_JITTER": "0.2",
    }
    with System(partitions=4) as system:
        system.start_api(wait=False)
        system.start_worker(wait=False, **worker_env)
        system.ready()
        receiver = system.receiver
        tenants: dict[str, Tenant] = {kind: system.add_tenant() for kind in KINDS}
        paths = {kind: f"/{kind}" for kind in KINDS}
        subscriptions = {kind: system.subscribe(tenants[kind], paths[kind])["id"] for kind in KINDS}
        recovered = _endpoints(receiver, paths, slow_seconds)
        issuer = system.issuers[0]
        count = int(rps * seconds)
        loads = {
            kind: CreateLoad(
                system.api.url, tenants[kind].headers(), lambda _: issuer.mandate(), rps, count
            ).start()
            for kind in KINDS
        }
        answers = {kind: load.join(timeout=seconds + 60) for kind, load in loads.items()}
        created = {
            kind: {a.mandate_id: a for a in got if a.mandate_id} for kind, got in answers.items()
        }
        end_of_load = time.monotonic()

        def healthy_arrived() -> bool:
            return all(
                set(created[k]) <= _mandates(receiver, paths[k], answered=True) for k in HEALTHY
            )

        wait_until(healthy_arrived, timeout=5.0, interval=0.2)
        healthy_by_end = {
            k: len(set(created[k]) & _mandates(receiver, paths[k], answered=True)) for k in HEALTHY
        }
        latencies = [ms for k in HEALTHY for ms in _latencies(receiver, paths[k], created[k])]
        samples = scrape(system.workers[0].url)
        opened = value(samples, "webhook_circuit_breaker_transitions_total", state="open")
        parked = {
            reason: value(samples, "webhook_jobs_parked_total", reason=reason)
            for reason in ("window_full", "breaker_open")
        }
        before_recovery = _succeeded(system, subscriptions)
        recovered.set()
        recovery_started = time.monotonic()

        def drained() -> bool:
            states = _succeeded(system, subscriptions)
            return all(states[k].get("succeeded", 0) >= len(created[k]) for k in KINDS)

        wait_until(drained, timeout=scale.pick(120.0, 600.0), interval=1.0)
        drain = time.monotonic() - recovery_started
        states = _succeeded(system, subscriptions)
        samples = scrape(system.workers[0].url)
        closed = value(samples, "webhook_circuit_breaker_transitions_total", state="closed")
        dead = value(samples, "webhook_dead_letters_total")
        mixed = _mixed_ids(receiver, paths)
        alive = all(p.running for p in [*system.apis, *system.workers])
        five_xx = server_errors(system.processes(), include_503=True)

    lost = {k: len(created[k]) - states[k].get("succeeded", 0) for k in KINDS}
    statuses = {k: summarize(a) for k, a in answers.items()}
    for kind in KINDS:
        findings.check(
            len(created[kind]) == len(answers[kind]), f"{kind}: creates failed {statuses[kind]}"
        )
    for kind in HEALTHY:
        findings.check(
            healthy_by_end[kind] == len(created[kind]),
            f"{kind}: {len(created[kind]) - healthy_by_end[kind]} webhooks not delivered by the "
            "end of the load (+5 s)",
        )
    findings.check(opened >= 2, f"breakers opened {opened} times (failing + timing out: >= 2)")
    findings.check(parked["breaker_open"] > 0, "no job was parked behind an open breaker")
    findings.check(closed >= 2, f"breakers closed {closed} times after recovery (>= 2)")
    findings.check(not any(lost.values()), f"events lost or not delivered: {lost}")
    findings.check(dead == 0, f"{dead} events dead-lettered")
    findings.check(not mixed, f"{len(mixed)} mandates delivered under several webhook-ids")
    findings.check(alive, "the api or the worker died")
    findings.check(not five_xx, f"server errors: {five_xx}")
    figures: dict[str, Any] = {
        "rate_per_tenant": rps,
        "seconds": seconds,
        "slow_endpoint_seconds": slow_seconds,
        "created": {k: len(v) for k, v in created.items()},
        "healthy_delivered_by_end_of_load": healthy_by_end,
        "healthy_p50_ms": _pct(latencies, 0.5),
        "healthy_p99_ms": _pct(latencies, 0.99),
        "delivered_before_recovery": {k: v.get("succeeded", 0) for k, v in before_recovery.items()},
        "breakers_opened": opened,
        "breakers_closed": closed,
        "parked": parked,
        "drain_after_recovery_seconds": round(drain, 1),
        "seconds_after_load_until_recovery": round(recovery_started - end_of_load, 1),
        "lost": lost,
        "dead_lettered": dead,
    }
    tried = (
        f"5 tenants x {rps:.0f} creates/s for {seconds:.0f} s, one worker: 2 healthy endpoints, "
        f"one answering after {slow_seconds:.0f} s, one answering 503 and one never answering "
        "until after the load"
    )
    leaked = (
        f"healthy: {sum(healthy_by_end.values())} of {sum(len(created[k]) for k in HEALTHY)} "
        f"delivered by the end of the load, p99 {_pct(latencies, 0.99)} ms; "
        f"breakers opened {opened:.0f}x and closed {closed:.0f}x, "
        f"{parked['breaker_open']:.0f} + {parked['window_full']:.0f} jobs parked; "
        f"{sum(lost.values())} lost, {dead:.0f} dead-lettered"
    )
    return findings.row(NAME, tried, leaked, figures)


def _mandates(receiver: Receiver, path: str, *, answered: bool) -> set[str]:
    return {
        json.loads(d.body)["data"]["id"]
        for d in receiver.at(path)
        if not answered or d.answered_at is not None
    }


def _latencies(receiver: Receiver, path: str, created: dict[str, Any]) -> list[float]:
    """Create answered -> webhook received, per mandate (its first arrival)."""
    first: dict[str, float] = {}
    for delivery in receiver.at(path):
        mandate_id = json.loads(delivery.body)["data"]["id"]
        first[mandate_id] = min(delivery.at, first.get(mandate_id, delivery.at))
    return [(first[m] - a.answered_at) * 1000 for m, a in created.items() if m in first]


def _mixed_ids(receiver: Receiver, paths: dict[str, str]) -> list[str]:
    ids: dict[str, set[str]] = {}
    for path in paths.values():
        for delivery in receiver.at(path):
            ids.setdefault(json.loads(delivery.body)["data"]["id"], set()).add(delivery.webhook_id)
    return [m for m, found in ids.items() if len(found) > 1]
