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


def run(scale: Scale) -> Row:  # noqa: PLR0915 - one scenario, read top to bottom
    count = scale.pick(90, 900)
    rps = scale.pick(15.0, 15.0)
    stops = scale.pick(1, 2)
    outage = scale.pick(3.0, 6.0)
    findings = Findings()
    with ThrowawayCluster() as cluster, System(database_url=cluster.url) as system:
        api = system.start_api(wait=False, API_DB_POOL_TIMEOUT_SECONDS="2")
        worker = system.start_worker(wait=False)
        system.ready()
        assert system.verifier is not None
        pids = {p.service: p._process.pid for p in (api, worker, system.verifier)}  # type: ignore[union-attr]
        tenant = system.add_tenant()
        system.subscribe(tenant, PATH, EVENTS)
        issuer = system.issuers[0]
        load = CreateLoad(api.url, tenant.headers(), lambda _: issuer.mandate(), rps, count)
        load.start()
        probe = Probe({"api": api.url, "webhook-worker": worker.url}, load.started_at).start()
        duration = count / rps
        windows: list[tuple[float, float]] = []
        restarted: list[float] = []
        for n in range(stops):
            at = duration * (n + 1) / (stops + 1) - outage / 2
            time.sleep(max(0.0, at - load.elapsed()))
            down = load.elapsed()
            cluster.stop("fast")
            time.sleep(outage)
            windows.append((down, load.elapsed()))  # down until here: start() begins now
            cluster.start()
            restarted.append(load.elapsed())
        answers = load.join(timeout=duration + 60)
        probe.stop()
        alive = {p.service: p.running for p in (api, worker, system.verifier)}
        same = {p.service: p._process.pid for p in (api, worker, system.verifier)} == pids  # type: ignore[union-attr]

        created = {a.mandate_id for a in answers if a.mandate_id}
        stored = {
            r["id"] for r in system.query("SELECT id FROM mandates WHERE tenant_id = $1", tenant.id)
        }

        def drained() -> bool:
            return stored <= delivered_mandate_ids(system.receiver, PATH).keys()

        wait_until(drained, timeout=scale.pick(60.0, 120.0), interval=0.5)
        delivered = delivered_mandate_ids(system.receiver, PATH)
        outbox = system.query(
            "SELECT (payload::json -> 'data' ->> 'id') AS mandate_id, count(*) AS n "
            "FROM outbox WHERE tenant_id = $1 GROUP BY 1",
            tenant.id,
        )
        per_mandate = {r["mandate_id"]: r["n"] for r in outbox}
        causes = error_causes(system.processes())
        five_xx = server_errors(system.processes())
        undelivered_state = where_events_stopped(system, stored - delivered.keys())

    # --- answers ---------------------------------------------------------------------------
    statuses = summarize(answers)
    bad = [a for a in answers if a.status not in (201, 503)]
    unclear_503 = [a for a in answers if a.status == 503 and not a.retry_after]
    during = [a for a in answers if any(s <= a.sent_at <= e for s, e in windows)]
    findings.check(not bad, f"{len(bad)} answers neither 201 nor 503: {summarize(bad)}")
    for cause, n in five_xx.items():
        findings.check(False, f"server error: {cause} (x{n})")
    findings.check(not unclear_503, f"{len(unclear_503)} 503 answers without Retry-After")
    findings.check(
        any(a.status == 503 for a in during),
        "no 503 while the database was down: the outage did not reach the api",
    )
    slowest_503 = max((a.seconds for a in answers if a.status == 503), default=0.0)
    # --- probes ------------------------------------------------------------------------------
    ready_down = probe.during(windows, "/readyz")
    alive_down = probe.during(windows, "/healthz")
    findings.check(
        bool(ready_down) and all(s == 503 for s in ready_down),
        f"readiness while down: {sorted(set(map(str, ready_down)))} (want 503)",
    )
    findings.check(
        bool(alive_down) and all(s == 200 for s in alive_down),
        f"liveness while down: {sorted(set(map(str, alive_down)))} (want 200)",
    )
    # --- recovery ----------------------------------------------------------------------------
    recoveries = []
    for up in restarted:
        after = [a for a in answers if a.sent_at >= up and a.status == 201]
        recoveries.append(round(after[0].sent_at - up, 2) if after else None)
        late = [
            a
            for a in answers
            if a.sent_at >= up + RECOVERY_SECONDS
            and a.status != 201
            and not any(
                start - IN_FLIGHT_SECONDS <= a.sent_at <= end + RECOVERY_SECONDS
                for start, end in windows
            )
        ]
        findings.check(
            not late,
            f"{len(late)} failures more than {RECOVERY_SECONDS:.0f} s after the database came back",
        )
    findings.check(all(r is not None for r in recoveries), "creates never succeeded again")
    findings.check(all(alive.values()), f"a service died: {alive}")
    findings.check(same, "a service was restarted")
    # --- consistency -------------------------------------------------------------------------
    missing = created - stored
    without_outbox = {m for m in stored if per_mandate.get(m, 0) != 1}
    orphans = set(per_mandate) - stored
    undelivered = stored - delivered.keys()
    mixed = {m for m, ids in delivered.items() if len(ids) > 1}
    findings.check(not missing, f"{len(missing)} mandates answered 201 are not stored")
    findings.check(
        not without_outbox,
        f"{len(without_outbox)} mandates without exactly one outbox row (half-written)",
    )
    findings.check(not orphans, f"{len(orphans)} outbox rows without their mandate")
    findings.check(not undelivered, f"{len(undelivered)} stored mandates' events never delivered")
    findings.check(not mixed, f"{len(mixed)} mandates delivered under several webhook-ids")
    figures = {
        "creates": len(answers),
        "answers": statuses,
        "answers_while_down": summarize(during),
        "outage_windows_s": [(round(s, 1), round(e, 1)) for s, e in windows],
        "slowest_503_s": round(slowest_503, 3),
        "readyz_while_down": sorted(set(map(str, ready_down))),
        "healthz_while_down": sorted(set(map(str, alive_down))),
        "first_201_after_restart_s": recoveries,
        "mandates_stored": len(stored),
        "stored_but_answered_503": len(stored - created),
        "half_written": len(without_outbox),
        "orphan_outbox_rows": len(orphans),
        "events_delivered": len(delivered),
        "logged_errors": causes,
        "server_errors": five_xx,
        "undelivered_events_state": undelivered_state,
    }
    tried = (
        f"{len(answers)} creates at {rps:.0f}/s; own PostgreSQL cluster stopped (-m fast) "
        f"{stops}x for {outage:.0f} s and started again; probes every 0.25 s"
    )
    leaked = (
        f"{statuses.get('503', 0)} clear 503s, {len(bad)} other failures; "
        f"{len(without_outbox)} half-written, {len(orphans)} orphan outbox rows, "
        f"{len(undelivered)} undelivered; recovered in {recoveries} s, no restart"
    )
    return findings.row(NAME, tried, leaked, figures)
