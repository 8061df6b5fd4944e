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


class _Plan:
    """The load per tenant, how slow the slow endpoint is, and the worker's settings."""

    def __init__(self, scale: Scale) -> None:
        self.rps = scale.pick(4.0, 15.0)  # per tenant
        self.seconds = scale.pick(8.0, 60.0)
        self.slow_seconds = scale.pick(1.0, 5.0)
        self.drain_timeout = scale.pick(120.0, 600.0)
        self.worker_env = {
            "WORKER_DELIVERY_TIMEOUT_SECONDS": str(scale.pick(2, 8)),
            "WORKER_BREAKER_COOLDOWN_SECONDS": str(scale.pick(1.0, 5.0)),
            # long enough that the outage exhausts no event's attempts: nothing is dead-lettered
            "WORKER_RETRY_SCHEDULE_SECONDS": "1,2,4,8,16,32,64,128",
            "WORKER_RETRY_JITTER": "0.2",
        }


class _Subscribers:
    """A tenant per kind of subscriber, each subscribed to its own endpoint of the receiver."""

    def __init__(self, system: System) -> None:
        self.receiver = system.receiver
        self.tenants: dict[str, Tenant] = {kind: system.add_tenant() for kind in KINDS}
        self.paths = {kind: f"/{kind}" for kind in KINDS}
        self.subscriptions = {
            kind: system.subscribe(self.tenants[kind], self.paths[kind])["id"] for kind in KINDS
        }

    def arrived(self, kind: str, mandate_ids: dict[str, Any]) -> set[str]:
        """Those of `mandate_ids` whose webhook the `kind` endpoint received and answered."""
        return set(mandate_ids) & _mandates(self.receiver, self.paths[kind], answered=True)


def _create_everywhere(system: System, subs: _Subscribers, plan: _Plan) -> dict[str, list[Any]]:
    """Every tenant creates mandates at the same rate, at the same time; their answers."""
    issuer = system.issuers[0]
    count = int(plan.rps * plan.seconds)
    loads = {
        kind: CreateLoad(
            system.api.url,
            subs.tenants[kind].headers(),
            lambda _: issuer.mandate(),
            plan.rps,
            count,
        ).start()
        for kind in KINDS
    }
    return {kind: load.join(timeout=plan.seconds + 60) for kind, load in loads.items()}


class _AtEndOfLoad:
    """The healthy tenants' deliveries and the breakers, the others still unhealthy."""

    def __init__(
        self, system: System, subs: _Subscribers, created: dict[str, dict[str, Any]]
    ) -> None:
        self.ended_at = time.monotonic()
        wait_until(
            lambda: all(set(created[k]) == subs.arrived(k, created[k]) for k in HEALTHY),
            timeout=5.0,
            interval=0.2,
        )
        self.healthy_by_end = {k: len(subs.arrived(k, created[k])) for k in HEALTHY}
        self.latencies = [
            ms for k in HEALTHY for ms in _latencies(subs.receiver, subs.paths[k], created[k])
        ]
        samples = scrape(system.workers[0].url)
        self.opened = value(samples, "webhook_circuit_breaker_transitions_total", state="open")
        self.parked = {
            reason: value(samples, "webhook_jobs_parked_total", reason=reason)
            for reason in ("window_full", "breaker_open")
        }
        self.delivered = _succeeded(system, subs.subscriptions)


class _AfterRecovery:
    """Once the endpoints recovered: how long until every job arrived, and what was lost."""

    def __init__(
        self,
        system: System,
        subs: _Subscribers,
        created: dict[str, dict[str, Any]],
        recovered: threading.Event,
        timeout: float,
    ) -> None:
        recovered.set()
        self.started_at = time.monotonic()

        def drained() -> bool:
            states = _succeeded(system, subs.subscriptions)
            return all(states[k].get("succeeded", 0) >= len(created[k]) for k in KINDS)

        wait_until(drained, timeout=timeout, interval=1.0)
        self.drain = time.monotonic() - self.started_at
        states = _succeeded(system, subs.subscriptions)
        samples = scrape(system.workers[0].url)
        self.closed = value(samples, "webhook_circuit_breaker_transitions_total", state="closed")
        self.dead = value(samples, "webhook_dead_letters_total")
        self.mixed = _mixed_ids(subs.receiver, subs.paths)
        self.alive = all(p.running for p in [*system.apis, *system.workers])
        self.five_xx = server_errors(system.processes(), include_503=True)
        self.lost = {k: len(created[k]) - states[k].get("succeeded", 0) for k in KINDS}


def _check(
    findings: Findings,
    answers: dict[str, list[Any]],
    created: dict[str, dict[str, Any]],
    end: _AtEndOfLoad,
    after: _AfterRecovery,
) -> None:
    for kind in KINDS:
        findings.check(
            len(created[kind]) == len(answers[kind]),
            f"{kind}: creates failed {summarize(answers[kind])}",
        )
    for kind in HEALTHY:
        findings.check(
            end.healthy_by_end[kind] == len(created[kind]),
            f"{kind}: {len(created[kind]) - end.healthy_by_end[kind]} webhooks not delivered by "
            "the end of the load (+5 s)",
        )
    opened, closed = end.opened, after.closed
    findings.check(opened >= 2, f"breakers opened {opened} times (failing + timing out: >= 2)")
    findings.check(end.parked["breaker_open"] > 0, "no job was parked behind an open breaker")
    findings.check(closed >= 2, f"breakers closed {closed} times after recovery (>= 2)")
    findings.check(not any(after.lost.values()), f"events lost or not delivered: {after.lost}")
    findings.check(after.dead == 0, f"{after.dead} events dead-lettered")
    findings.check(
        not after.mixed, f"{len(after.mixed)} mandates delivered under several webhook-ids"
    )
    findings.check(after.alive, "the api or the worker died")
    findings.check(not after.five_xx, f"server errors: {after.five_xx}")


def _report(
    findings: Findings,
    plan: _Plan,
    created: dict[str, dict[str, Any]],
    end: _AtEndOfLoad,
    after: _AfterRecovery,
) -> Row:
    figures: dict[str, Any] = {
        "rate_per_tenant": plan.rps,
        "seconds": plan.seconds,
        "slow_endpoint_seconds": plan.slow_seconds,
        "created": {k: len(v) for k, v in created.items()},
        "healthy_delivered_by_end_of_load": end.healthy_by_end,
        "healthy_p50_ms": _pct(end.latencies, 0.5),
        "healthy_p99_ms": _pct(end.latencies, 0.99),
        "delivered_before_recovery": {k: v.get("succeeded", 0) for k, v in end.delivered.items()},
        "breakers_opened": end.opened,
        "breakers_closed": after.closed,
        "parked": end.parked,
        "drain_after_recovery_seconds": round(after.drain, 1),
        "seconds_after_load_until_recovery": round(after.started_at - end.ended_at, 1),
        "lost": after.lost,
        "dead_lettered": after.dead,
    }
    tried = (
        f"5 tenants x {plan.rps:.0f} creates/s for {plan.seconds:.0f} s, one worker: 2 healthy "
        f"endpoints, one answering after {plan.slow_seconds:.0f} s, one answering 503 and one "
        "never answering until after the load"
    )
    leaked = (
        f"healthy: {sum(end.healthy_by_end.values())} of "
        f"{sum(len(created[k]) for k in HEALTHY)} delivered by the end of the load, "
        f"p99 {_pct(end.latencies, 0.99)} ms; "
        f"breakers opened {end.opened:.0f}x and closed {after.closed:.0f}x, "
        f"{end.parked['breaker_open']:.0f} + {end.parked['window_full']:.0f} jobs parked; "
        f"{sum(after.lost.values())} lost, {after.dead:.0f} dead-lettered"
    )
    return findings.row(NAME, tried, leaked, figures)


def run(scale: Scale) -> Row:
    plan = _Plan(scale)
    findings = Findings()
    with System(partitions=4) as system:
        system.start_api(wait=False)
        system.start_worker(wait=False, **plan.worker_env)
        system.ready()
        subs = _Subscribers(system)
        recovered = _endpoints(subs.receiver, subs.paths, plan.slow_seconds)
        answers = _create_everywhere(system, subs, plan)
        created = {
            kind: {a.mandate_id: a for a in got if a.mandate_id} for kind, got in answers.items()
        }
        end = _AtEndOfLoad(system, subs, created)
        after = _AfterRecovery(system, subs, created, recovered, plan.drain_timeout)
    _check(findings, answers, created, end, after)
    return _report(findings, plan, created, end, after)


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
