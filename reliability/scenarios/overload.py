"""Twice the capacity the api can serve, then normal load: it sheds the excess at once and
recovers.

The api's closed-loop create capacity is measured first (wrk, 16 connections). Then an
open-loop generator (the harness's `load.run_open_loop`: each request sent at its scheduled
time, latency from that time) offers 50 % of it, then 200 % (60 s; 5 s in the short version),
then 50 % again.
Checked: every answer is a 201 or a 503/429 (no 500, no timeout, no dropped connection); the
excess is refused with ``{"error": "overloaded"}``; exactly the answered-201 mandates were stored,
each with its outbox event (a refused request stores nothing); latency is back to normal
(every request admitted, p99 within twice the p99 before the overload, + 10 ms, for a second)
within 2 s of the overload's end (full scale; the short version, seconds long on a busy CI
machine, checks instead that every request is admitted from 2 s after the overload).
Goodput and latency at 200 % are reported (`make bench` holds the goals for them).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx

from mandate_vault_harness.load import (
    Phase,
    Run,
    Target,
    percentile,
    recovery_seconds,
    run_open_loop,
    wrk_script,
    wrk_with_cpu,
)
from mandate_vault_harness.system import System, Tenant
from reliability.core import Findings, Row, Scale

NAME = "overload (2x capacity)"
RECOVERY_GOAL_S = 2.0
ALLOWED = {201, 429, 503}
SETTLE_S = 2.0  # short version: after the overload, every request must be admitted


def _stored(system: System, tenant: Tenant) -> tuple[int, int]:
    row = system.query(
        "SELECT (SELECT count(*) FROM mandates WHERE tenant_id = $1), "
        "(SELECT count(*) FROM outbox WHERE tenant_id = $1)",
        tenant.id,
    )[0]
    return int(row[0]), int(row[1])


def _settled(system: System, tenant: Tenant) -> tuple[int, int]:
    """The stored counts once they stop changing."""
    previous = _stored(system, tenant)
    while True:
        time.sleep(0.3)
        current = _stored(system, tenant)
        if current == previous:
            return current
        previous = current


def _capacity(url: str, body: bytes, headers: dict[str, str], seconds: int) -> float:
    """Closed-loop create throughput (wrk, 16 connections)."""
    script = wrk_script(body, headers)
    try:
        wrk_with_cpu(url, 1, script)
        return wrk_with_cpu(url, seconds, script)[0].rps
    finally:
        Path(script).unlink()


def _phase_figures(run: Run, index: int) -> dict[str, Any]:
    phase, outcomes = run.phases[index], run.of(index)
    admitted = [o.latency * 1000 for o in outcomes if o.status == 201]
    refused = [o.latency * 1000 for o in outcomes if o.refused]
    statuses: dict[str, int] = {}
    for o in outcomes:
        key = "refused 503" if o.refused else (str(o.status) if o.status else "no answer")
        statuses[key] = statuses.get(key, 0) + 1
    return {
        "offered_rps": round(phase.rate, 1),
        "seconds": phase.seconds,
        "answers": dict(sorted(statuses.items())),
        "goodput_rps": round(len(admitted) / phase.seconds, 1),
        "admitted_p50_ms": round(percentile(admitted, 0.5), 1),
        "admitted_p99_ms": round(percentile(admitted, 0.99), 1),
        "refused_p99_ms": round(percentile(refused, 0.99), 1),
    }


def _figures(load: Run, capacity: float) -> dict[str, Any]:
    """Per phase, plus the recovery after the overload and the goodput at 200 %."""
    figures: dict[str, Any] = {
        "capacity_rps": round(capacity, 1),
        **{p.name: _phase_figures(load, i) for i, p in enumerate(load.phases)},
        "load_generator_cpu_share": round(load.cpu_seconds / load.elapsed, 3),
    }
    figures["recovery_s"] = recovery_seconds(load, figures["before"]["admitted_p99_ms"])
    figures["goodput_at_200pct_ratio"] = round(figures["overload"]["goodput_rps"] / capacity, 3)
    return figures


def _check_answers_and_rows(
    findings: Findings, load: Run, before: tuple[int, int], after: tuple[int, int]
) -> int:
    """Only 201/429/503, some refused, and exactly the 201s stored, each with its outbox row.

    Returns the number refused.
    """
    created = sum(1 for o in load.outcomes if o.status == 201)
    others = [o for o in load.outcomes if o.status not in ALLOWED]
    refused = sum(1 for o in load.outcomes if o.refused)
    findings.check(not others, f"answers other than 201/429/503: {len(others)}")
    findings.check(refused > 0, "nothing was refused at twice the capacity: no overload shown")
    findings.check(
        after[0] - before[0] == created,
        f"{after[0] - before[0]} mandates stored for {created} answered 201",
    )
    findings.check(
        after[1] - before[1] == created, f"{after[1] - before[1]} outbox rows for {created} creates"
    )
    return refused


def _check_recovery(
    findings: Findings, scale: Scale, load: Run, recovery: float, overload_end: float
) -> None:
    """Latency normal again soon (full scale), or every request admitted once settled."""
    if scale is Scale.FULL:  # back to normal: see mandate_vault_harness.load.recovery_seconds
        findings.check(
            recovery <= RECOVERY_GOAL_S, f"latency normal again after {recovery} s (goal 2 s)"
        )
    else:  # seconds-long, on a busy CI machine: judge admissions, not latency
        tail = [o for o in load.of(2) if o.scheduled >= overload_end + SETTLE_S]
        findings.check(
            all(o.status == 201 for o in tail),
            f"requests refused or failed more than {SETTLE_S:g} s after the overload: "
            f"{sum(1 for o in tail if o.status != 201)}",
        )


def run(scale: Scale) -> Row:
    findings = Findings()
    normal_s, overload_s = scale.pick(4.0, 10.0), scale.pick(5.0, 60.0)
    with System() as system:
        api = system.start_api()
        system.ready()
        tenant = system.add_tenant()
        system.subscribe(tenant, "/overload", ["MandateCreated"])
        body = json.dumps({"vc_jwt": system.issuers[0].mandate(expires_in=86_400)}).encode()
        headers = {"Content-Type": "application/json", **tenant.headers()}
        url = f"{api.url}/api/v1/mandates"
        capacity = _capacity(url, body, headers, scale.pick(2, 8))
        before = _settled(system, tenant)  # wrk leaves creates in flight when it stops
        phases = [
            Phase("before", capacity * 0.5, normal_s),
            Phase("overload", capacity * 2, overload_s),
            Phase("after", capacity * 0.5, normal_s),
        ]
        load = run_open_loop(Target(api.url, "/api/v1/mandates", body, headers), phases)
        after = _stored(system, tenant)
        probes = [
            httpx.get(f"{api.url}{p}", timeout=5).status_code for p in ("/healthz", "/readyz")
        ]
    figures = _figures(load, capacity)
    recovery = figures["recovery_s"]
    refused = _check_answers_and_rows(findings, load, before, after)
    _check_recovery(findings, scale, load, recovery, overload_end=normal_s + overload_s)
    findings.check(probes == [200, 200], f"health/readiness after the overload: {probes}")
    tried = (
        f"creates at 50 % of the measured capacity ({capacity:,.0f}/s), then 200 % for "
        f"{overload_s:.0f} s, then 50 %"
    )
    leaked = (
        f"0 lost, 0 half-written; {refused:,} refused at once (503 overloaded); goodput at 200 % "
        f"{figures['goodput_at_200pct_ratio']:.0%} of capacity; normal again after {recovery} s"
        if findings.ok
        else "see problems"
    )
    return findings.row(NAME, tried, leaked, figures)
