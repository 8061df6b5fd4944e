"""PostgreSQL stopped and started during load, on a throwaway cluster of our own.

The api, the webhook-worker and the jwt-verifier run against a cluster this scenario created
(the harness's pgcluster), so stopping it (`pg_ctl stop -m fast`) disturbs nobody else. While
an open-loop load creates mandates for a tenant subscribed to every mandate event, and probes
poll /healthz and /readyz, the database is stopped for a few seconds and started again. Expected:
liveness 200 throughout, readiness 503 while it is down, every create answered 201 or a clear
503 with Retry-After (never a 500, never a dropped connection), the same processes serving again
after the restart (no service restarted), and a consistent database: every 201's mandate exists,
every mandate has its outbox row, no outbox row lacks its mandate, and every mandate's event
reaches the subscriber.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import httpx

from mandate_vault_harness.load import CreateLoad, summarize
from mandate_vault_harness.pgcluster import ThrowawayCluster
from mandate_vault_harness.system import (
    System,
    delivered_mandate_ids,
    error_causes,
    server_errors,
    where_events_stopped,
)
from reliability.core import Findings, Row, Scale, wait_until

NAME = "PostgreSQL stopped and started"
PATH = "/pg-outage"
EVENTS = ["MandateCreated", "MandateVerificationFailed"]
# A create sent just before the stop can still be running when the database goes away.
IN_FLIGHT_SECONDS = 1.0
RECOVERY_SECONDS = 10.0  # after the database is back, creates must succeed again within this


@dataclass
class Probe:
    """Polls liveness and readiness of each service, keeping (time, service, probe, status)."""

    targets: dict[str, str]
    started_at: float
    samples: list[tuple[float, str, str, int | None]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Probe:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        with httpx.Client(timeout=3) as client:
            while not self._stop.is_set():
                for service, url in self.targets.items():
                    for probe in ("/healthz", "/readyz"):
                        at = time.monotonic() - self.started_at
                        try:
                            status: int | None = client.get(url + probe).status_code
                        except httpx.HTTPError:
                            status = None
                        self.samples.append((at, service, probe, status))
                time.sleep(0.25)

    def during(self, windows: list[tuple[float, float]], probe: str) -> list[int | None]:
        return [
            status
            for at, _, name, status in self.samples
            if name == probe and any(start + 0.5 <= at <= end - 0.3 for start, end in windows)
        ]


@dataclass(frozen=True)
class _Plan:
    """How much load, and how many outages of how long."""

    count: int
    rps: float
    stops: int
    outage: float

    @classmethod
    def at(cls, scale: Scale) -> _Plan:
        return cls(
            count=scale.pick(90, 900),
            rps=scale.pick(15.0, 15.0),
            stops=scale.pick(1, 2),
            outage=scale.pick(3.0, 6.0),
        )

    @property
    def duration(self) -> float:
        return self.count / self.rps


@dataclass
class _Outages:
    """When the database was down (seconds since the load started) and when it was started."""

    windows: list[tuple[float, float]] = field(default_factory=list)
    restarted: list[float] = field(default_factory=list)

    def covers(self, at: float, before: float = 0.0, after: float = 0.0) -> bool:
        return any(start - before <= at <= end + after for start, end in self.windows)


def _stop_and_start(cluster: ThrowawayCluster, load: CreateLoad, plan: _Plan) -> _Outages:
    """Stop the database `plan.stops` times, spread evenly over the load, each for `outage`."""
    outages = _Outages()
    for n in range(plan.stops):
        at = plan.duration * (n + 1) / (plan.stops + 1) - plan.outage / 2
        time.sleep(max(0.0, at - load.elapsed()))
        down = load.elapsed()
        cluster.stop("fast")
        time.sleep(plan.outage)
        outages.windows.append((down, load.elapsed()))  # down until here: start() begins now
        cluster.start()
        outages.restarted.append(load.elapsed())
    return outages


def _service_pids(system: System) -> dict[str, int]:
    services = [*system.apis, *system.workers, system.verifier]
    return {p.service: p._process.pid for p in services}  # type: ignore[union-attr]


class _Observed:
    """What the run left behind: the answers, the services, the database and the deliveries."""

    def __init__(
        self,
        system: System,
        tenant_id: str,
        load: CreateLoad,
        probe: Probe,
        pids: dict[str, int],
        drain_timeout: float,
    ) -> None:
        assert system.verifier is not None
        receiver = system.receiver
        self.answers = load.join(timeout=load.count / load.rps + 60)
        probe.stop()
        self.bad = [a for a in self.answers if a.status not in (201, 503)]
        self.alive = {
            p.service: p.running for p in (*system.apis, *system.workers, system.verifier)
        }
        self.same_processes = _service_pids(system) == pids
        self.created = {a.mandate_id for a in self.answers if a.mandate_id}
        self.stored = {
            r["id"] for r in system.query("SELECT id FROM mandates WHERE tenant_id = $1", tenant_id)
        }
        wait_until(
            lambda: self.stored <= delivered_mandate_ids(receiver, PATH).keys(),
            timeout=drain_timeout,
            interval=0.5,
        )
        self.delivered = delivered_mandate_ids(receiver, PATH)
        outbox = system.query(
            "SELECT (payload::json -> 'data' ->> 'id') AS mandate_id, count(*) AS n "
            "FROM outbox WHERE tenant_id = $1 GROUP BY 1",
            tenant_id,
        )
        self.per_mandate = {r["mandate_id"]: r["n"] for r in outbox}
        self.causes = error_causes(system.processes())
        self.five_xx = server_errors(system.processes())
        self.undelivered_state = where_events_stopped(system, self.undelivered)

    @property
    def without_outbox(self) -> set[str]:
        """Half-written: mandates without exactly one outbox row."""
        return {m for m in self.stored if self.per_mandate.get(m, 0) != 1}

    @property
    def orphans(self) -> set[str]:
        """Outbox rows without their mandate."""
        return set(self.per_mandate) - self.stored

    @property
    def undelivered(self) -> set[str]:
        return self.stored - self.delivered.keys()


def _check_answers(findings: Findings, seen: _Observed, outages: _Outages) -> None:
    """Every create answered 201 or a clear 503; some 503s while the database was down."""
    bad = seen.bad
    unclear_503 = [a for a in seen.answers if a.status == 503 and not a.retry_after]
    during = [a for a in seen.answers if outages.covers(a.sent_at)]
    findings.check(not bad, f"{len(bad)} answers neither 201 nor 503: {summarize(bad)}")
    for cause, n in seen.five_xx.items():
        findings.check(False, f"server error: {cause} (x{n})")
    findings.check(not unclear_503, f"{len(unclear_503)} 503 answers without Retry-After")
    findings.check(
        any(a.status == 503 for a in during),
        "no 503 while the database was down: the outage did not reach the api",
    )


def _check_probes(findings: Findings, probe: Probe, outages: _Outages) -> None:
    """Readiness 503 and liveness 200 while the database was down."""
    ready_down = probe.during(outages.windows, "/readyz")
    alive_down = probe.during(outages.windows, "/healthz")
    findings.check(
        bool(ready_down) and all(s == 503 for s in ready_down),
        f"readiness while down: {sorted(set(map(str, ready_down)))} (want 503)",
    )
    findings.check(
        bool(alive_down) and all(s == 200 for s in alive_down),
        f"liveness while down: {sorted(set(map(str, alive_down)))} (want 200)",
    )


def _check_recovery(findings: Findings, seen: _Observed, outages: _Outages) -> list[float | None]:
    """Creates succeed again soon after each restart, by the same processes; returns how soon."""
    recoveries = []
    for up in outages.restarted:
        after = [a for a in seen.answers if a.sent_at >= up and a.status == 201]
        recoveries.append(round(after[0].sent_at - up, 2) if after else None)
        late = [
            a
            for a in seen.answers
            if a.sent_at >= up + RECOVERY_SECONDS
            and a.status != 201
            and not outages.covers(a.sent_at, IN_FLIGHT_SECONDS, RECOVERY_SECONDS)
        ]
        findings.check(
            not late,
            f"{len(late)} failures more than {RECOVERY_SECONDS:.0f} s after the database came back",
        )
    findings.check(all(r is not None for r in recoveries), "creates never succeeded again")
    findings.check(all(seen.alive.values()), f"a service died: {seen.alive}")
    findings.check(seen.same_processes, "a service was restarted")
    return recoveries


def _check_consistency(findings: Findings, seen: _Observed) -> None:
    """Every 201 stored, each mandate with one outbox row and its event delivered once."""
    missing = seen.created - seen.stored
    without_outbox, orphans, undelivered = seen.without_outbox, seen.orphans, seen.undelivered
    mixed = {m for m, ids in seen.delivered.items() if len(ids) > 1}
    findings.check(not missing, f"{len(missing)} mandates answered 201 are not stored")
    findings.check(
        not without_outbox,
        f"{len(without_outbox)} mandates without exactly one outbox row (half-written)",
    )
    findings.check(not orphans, f"{len(orphans)} outbox rows without their mandate")
    findings.check(not undelivered, f"{len(undelivered)} stored mandates' events never delivered")
    findings.check(not mixed, f"{len(mixed)} mandates delivered under several webhook-ids")


def _report(
    findings: Findings,
    plan: _Plan,
    seen: _Observed,
    outages: _Outages,
    probe: Probe,
    recoveries: list[float | None],
) -> Row:
    answers, stored, windows = seen.answers, seen.stored, outages.windows
    statuses = summarize(answers)
    slowest_503 = max((a.seconds for a in answers if a.status == 503), default=0.0)
    without_outbox, orphans = seen.without_outbox, seen.orphans
    figures = {
        "creates": len(answers),
        "answers": statuses,
        "answers_while_down": summarize([a for a in answers if outages.covers(a.sent_at)]),
        "outage_windows_s": [(round(s, 1), round(e, 1)) for s, e in windows],
        "slowest_503_s": round(slowest_503, 3),
        "readyz_while_down": sorted(set(map(str, probe.during(windows, "/readyz")))),
        "healthz_while_down": sorted(set(map(str, probe.during(windows, "/healthz")))),
        "first_201_after_restart_s": recoveries,
        "mandates_stored": len(stored),
        "stored_but_answered_503": len(stored - seen.created),
        "half_written": len(without_outbox),
        "orphan_outbox_rows": len(orphans),
        "events_delivered": len(seen.delivered),
        "logged_errors": seen.causes,
        "server_errors": seen.five_xx,
        "undelivered_events_state": seen.undelivered_state,
    }
    tried = (
        f"{len(answers)} creates at {plan.rps:.0f}/s; own PostgreSQL cluster stopped (-m fast) "
        f"{plan.stops}x for {plan.outage:.0f} s and started again; probes every 0.25 s"
    )
    leaked = (
        f"{statuses.get('503', 0)} clear 503s, {len(seen.bad)} other failures; "
        f"{len(without_outbox)} half-written, {len(orphans)} orphan outbox rows, "
        f"{len(seen.undelivered)} undelivered; recovered in {recoveries} s, no restart"
    )
    return findings.row(NAME, tried, leaked, figures)


def run(scale: Scale) -> Row:
    plan = _Plan.at(scale)
    findings = Findings()
    with ThrowawayCluster() as cluster, System(database_url=cluster.url) as system:
        api = system.start_api(wait=False, API_DB_POOL_TIMEOUT_SECONDS="2")
        worker = system.start_worker(wait=False)
        system.ready()
        pids = _service_pids(system)
        tenant = system.add_tenant()
        system.subscribe(tenant, PATH, EVENTS)
        issuer = system.issuers[0]
        load = CreateLoad(
            api.url, tenant.headers(), lambda _: issuer.mandate(), plan.rps, plan.count
        )
        load.start()
        probe = Probe({"api": api.url, "webhook-worker": worker.url}, load.started_at).start()
        outages = _stop_and_start(cluster, load, plan)
        seen = _Observed(
            system, tenant.id, load, probe, pids, drain_timeout=scale.pick(60.0, 120.0)
        )
    _check_answers(findings, seen, outages)
    _check_probes(findings, probe, outages)
    recoveries = _check_recovery(findings, seen, outages)
    _check_consistency(findings, seen)
    return _report(findings, plan, seen, outages, probe, recoveries)
