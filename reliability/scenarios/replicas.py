"""Replicas: 3 api, 2 jwt-verifier and 2 webhook-worker processes on one PostgreSQL, one broker
and one Redis, traffic spread round-robin over the api replicas.

Three phases, one after the other so that each measures only itself:

1. **Shared rate limit.** One tenant is driven far above its limit
   (API_RATE_LIMIT_TENANT_PER_SECOND) by concurrent clients spread over the three replicas.
   The admitted rate, measured after the first window, must stay within 10 % of the configured
   rate (per-process limits would admit three times it).
2. **Revocation.** API keys are cached on every replica (each used once on each), then revoked
   one by one through a rotating replica (by an admin of another tenant, so the refused polls
   cannot throttle the revocations). Every replica is polled until it answers 401; the time
   from sending the revocation to the last replica's refusal must be <= 1 s for every one
   (p100), with the auth cache TTL at 60 s so only the invalidation channel can explain it.
3. **Deliveries through kills.** Mandates are created at a steady rate round-robin over the
   replicas; midway one api replica - the one running the outbox relay - and one worker are
   SIGKILLed (the killed api leaves the rotation as a load balancer's health check would drop
   it). Every stored mandate's event must
   arrive (0 lost), a duplicate only ever under the same webhook-id, and the relay's publishes
   per event are read back from the topic (mean, max).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx

from mandate_vault_api.roles import Role
from mandate_vault_harness.kafka import publish_figures, publishes_per_event
from mandate_vault_harness.load import CreateLoad, summarize
from mandate_vault_harness.redis import RedisServer
from mandate_vault_harness.services import ServiceProcess
from mandate_vault_harness.system import (
    System,
    Tenant,
    delivered_mandate_ids,
    publishing_api,
    server_errors,
)
from reliability.core import Findings, Row, Scale, wait_until

NAME = "replicas: 3 api, 2 verifiers, 2 workers"
TENANT_RATE = 40.0  # requests/s per tenant, shared by the replicas through Redis
CACHE_SECONDS = "60"
PATH = "/replicas"


def run(scale: Scale) -> Row:
    findings = Findings()
    redis = RedisServer().start()
    verifiers: list[ServiceProcess] = []
    with System(partitions=4) as system:
        try:
            verifiers = _start(system, redis)
            figures = {
                "rate_limit": _rate_limit_phase(system, scale, findings),
                "revocation": _revocation_phase(system, scale, findings),
                "deliveries": _delivery_phase(system, scale, findings),
            }
        finally:
            for verifier in verifiers:
                verifier.stop()
            redis.close()
        for cause, n in server_errors(system.processes()).items():
            findings.check(False, f"server error: {cause} (x{n})")
    limit, revocation, delivery = (figures[k] for k in ("rate_limit", "revocation", "deliveries"))
    tried = (
        f"3 api + 2 verifiers + 2 workers; a tenant at {limit['offered_per_second']}/s against a "
        f"{TENANT_RATE:.0f}/s limit; {revocation['revocations']} revocations x 3 replicas; "
        f"{delivery['created']} webhooks with 1 api and 1 worker SIGKILLed midway"
    )
    leaked = (
        f"limit held at {limit['admitted_per_second']}/s ({limit['deviation_percent']:+.1f} %); "
        f"revocation p100 {revocation['p100_seconds']} s; {delivery['lost']} events lost, "
        f"{delivery['duplicate_deliveries']} duplicates (same webhook-id); relay publishes per "
        f"event mean {delivery['publishes_per_event_mean']}, max "
        f"{delivery['publishes_per_event_max']}"
    )
    return findings.row(NAME, tried, leaked, figures)


def _start(system: System, redis: RedisServer) -> list[ServiceProcess]:
    """The second verifier serves one of the three apis; the system's own serves the others."""
    assert system.verifier is not None
    second = ServiceProcess("jwt-verifier", {"VERIFIER_TRUSTSTORE_JSON": system.truststore})
    system.retired.append(second)  # its log counts; stopped by the scenario
    second.start(wait=False)
    env = {
        "API_REDIS_URL": redis.url,
        "API_AUTH_CACHE_SECONDS": CACHE_SECONDS,
        "API_RATE_LIMIT_TENANT_PER_SECOND": str(TENANT_RATE),
        "API_GAUGE_REFRESH_INTERVAL_SECONDS": "1",
    }
    for n in range(3):
        verifier = second.url if n == 1 else system.verifier.url
        system.start_api(wait=False, API_VERIFIER_URL=verifier, **env)
    for _ in range(2):
        system.start_worker(wait=False)
    system.ready()
    second.wait_healthy()
    return [second]


# --- 1. the shared rate limit -----------------------------------------------------------------


def _rate_limit_phase(system: System, scale: Scale, findings: Findings) -> dict[str, object]:
    tenant = system.add_tenant()
    seconds = scale.pick(6.0, 20.0)
    window = 2.0  # the limit's window: a burst's worth (2 s of the rate)
    stamps = _hammer([api.url for api in system.apis], tenant.headers(), seconds, clients=12)
    start = min(t for t, _ in stamps)
    steady = [(t, s) for t, s in stamps if t >= start + window]
    admitted = sum(1 for _, status in steady if status == 200)
    duration = max(t for t, _ in stamps) - (start + window)
    rate = admitted / duration
    deviation = (rate - TENANT_RATE) / TENANT_RATE * 100
    statuses = Counter(status for _, status in stamps)
    findings.check(abs(deviation) <= 10, f"tenant limit held at {rate:.1f}/s ({deviation:+.1f} %)")
    findings.check(set(statuses) <= {200, 429}, f"unexpected answers {dict(statuses)}")
    return {
        "configured_per_second": TENANT_RATE,
        "offered_per_second": round(len(stamps) / (seconds or 1)),
        "admitted_per_second": round(rate, 1),
        "deviation_percent": round(deviation, 1),
        "measured_seconds": round(duration, 1),
        "answers": {str(k): v for k, v in sorted(statuses.items())},
        "per_process_limits_would_admit_per_second": TENANT_RATE * len(system.apis),
    }


def _hammer(
    urls: list[str], headers: dict[str, str], seconds: float, clients: int
) -> list[tuple[float, int]]:
    """Closed-loop GETs from `clients` threads, round-robin over `urls`: (time, status)."""
    stamps: list[tuple[float, int]] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client(offset: int) -> None:
        with httpx.Client(headers=headers, timeout=10) as http:
            n = offset
            while time.monotonic() < deadline:
                status = http.get(f"{urls[n % len(urls)]}/api/v1/mandates?limit=1").status_code
                with lock:
                    stamps.append((time.monotonic(), status))
                n += 1

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    return stamps


# --- 2. revocation ------------------------------------------------------------------------------


def _revocation_phase(system: System, scale: Scale, findings: Findings) -> dict[str, object]:
    count = scale.pick(20, 60)
    tenant = system.add_tenant(roles=())
    keys = system.add_api_keys(tenant, count, Role.MEMBER)
    admin = system.add_tenant(roles=(Role.ADMIN,))
    urls = [api.url for api in system.apis]
    seconds: list[float] = []
    after_answer: list[float] = []  # the same, from the revocation's answer (propagation only)
    with ThreadPoolExecutor(len(urls)) as pool:
        for n, (key_id, key) in enumerate(keys):
            headers = {"X-API-Key": key}
            for url in urls:  # cached on every replica
                httpx.get(f"{url}/api/v1/auth/me", headers=headers)
            sent, answered = _revoke(urls[n % len(urls)], admin, tenant, key_id)
            last = max(pool.map(lambda url, h=headers: _until_refused(url, h), urls))
            seconds.append(last - sent)
            after_answer.append(last - answered)
    seconds.sort()
    after_answer.sort()
    p100 = seconds[-1]
    findings.check(p100 <= 1.0, f"revocation reached every replica in {p100:.3f} s (> 1 s)")
    return {
        "revocations": count,
        "replicas": len(urls),
        "p50_seconds": round(seconds[len(seconds) // 2], 3),
        "p99_seconds": round(seconds[min(len(seconds) - 1, int(len(seconds) * 0.99))], 3),
        "p100_seconds": round(p100, 3),
        "after_the_revocations_answer_p50_seconds": round(after_answer[len(after_answer) // 2], 3),
        "after_the_revocations_answer_p100_seconds": round(after_answer[-1], 3),
        "auth_cache_seconds": float(CACHE_SECONDS),
    }


def _revoke(url: str, admin: Tenant, tenant: Tenant, key_id: str) -> tuple[float, float]:
    """Send the revocation: (when it was sent - the clock starts before the commit, when it
    was answered)."""
    headers = {**admin.headers(Role.ADMIN), "X-Tenant-ID": tenant.id}
    sent = time.monotonic()
    answer = httpx.delete(f"{url}/api/v1/api-keys/{key_id}", headers=headers, timeout=10)
    if answer.status_code != 200:
        msg = f"revocation answered {answer.status_code}: {answer.text}"
        raise RuntimeError(msg)
    return sent, time.monotonic()


def _until_refused(url: str, headers: dict[str, str], patience: float = 10.0) -> float:
    deadline = time.monotonic() + patience
    with httpx.Client(headers=headers, timeout=5) as http:
        while time.monotonic() < deadline:
            if http.get(f"{url}/api/v1/auth/me").status_code == 401:
                return time.monotonic()
            time.sleep(0.005)
    return float("inf")


# --- 3. deliveries while an api and a worker die -----------------------------------------------


def _delivery_phase(system: System, scale: Scale, findings: Findings) -> dict[str, object]:
    count, rps = scale.pick(300, 1200), scale.pick(20.0, 25.0)
    tenant = system.add_tenant()
    system.subscribe(tenant, PATH)
    issuer = system.issuers[0]
    urls = [api.url for api in system.apis]
    load = CreateLoad(
        urls[0], tenant.headers(), lambda _: issuer.mandate(), rps, count, urls=urls
    ).start()
    backlog = _OldestUnpublished(system).start()
    time.sleep(count / rps / 2)
    relay_replica = publishing_api(system.apis)
    victim = relay_replica or system.apis[1]  # the relay's replica, mid-batch
    load.urls.remove(victim.url)
    system.kill_api(victim)
    system.kill_worker(system.workers[0])
    answers = load.join(timeout=count / rps + 120)
    backlog.stop()
    stored = _stored_mandates(system, tenant)
    receiver = system.receiver
    assert receiver is not None
    wait_until(lambda: stored <= delivered_mandate_ids(receiver, PATH).keys(), 120, 1)
    figures = _delivery_figures(system, tenant, answers, stored, findings)
    return {
        "killed_the_relay_replica": relay_replica is not None,
        "oldest_unpublished_event_max_seconds": round(backlog.worst, 2),
        **figures,
    }


class _OldestUnpublished(threading.Thread):
    """Samples the age of the oldest unpublished outbox row: how long events waited for a relay
    (the failover after the relay's replica died shows here)."""

    def __init__(self, system: System) -> None:
        super().__init__(daemon=True)
        self._system = system
        self._done = threading.Event()
        self.worst = 0.0

    def start(self) -> _OldestUnpublished:  # type: ignore[override]
        super().start()
        return self

    def run(self) -> None:
        while not self._done.wait(0.25):
            age = self._system.scalar(
                "SELECT coalesce(extract(epoch FROM now() - min(created_at)), 0) "
                "FROM outbox WHERE published_at IS NULL"
            )
            self.worst = max(self.worst, float(age))

    def stop(self) -> None:
        self._done.set()
        self.join()


def _stored_mandates(system: System, tenant: Tenant) -> set[str]:
    rows = system.query("SELECT id FROM mandates WHERE tenant_id = $1", tenant.id)
    return {row["id"] for row in rows}


def _delivery_figures(
    system: System,
    tenant: Tenant,
    answers: list,  # type: ignore[type-arg]
    stored: set[str],
    findings: Findings,
) -> dict[str, object]:
    assert system.broker is not None
    deliveries = system.receiver.at(PATH)
    by_mandate = delivered_mandate_ids(system.receiver, PATH)
    lost = stored - by_mandate.keys()
    several_ids = [m for m, ids in by_mandate.items() if len(ids) > 1]
    per_id = Counter(d.webhook_id for d in deliveries)
    events = [
        row["event_id"]
        for row in system.query("SELECT event_id FROM outbox WHERE tenant_id = $1", tenant.id)
    ]
    relay = publish_figures(
        publishes_per_event(system.broker.bootstrap, system.topic, events), events
    )
    answered = [a for a in answers if a.status == 201]
    findings.check(not lost, f"{len(lost)} events lost")
    findings.check(not several_ids, f"{len(several_ids)} mandates under 2+ webhook-ids")
    findings.check(not system.receiver.invalid, "deliveries with an invalid signature")
    findings.check(relay["never_published"] == 0, f"{relay['never_published']} never published")
    findings.check({a.mandate_id for a in answered} <= stored, "a 201 without a stored mandate")
    alive: Callable[[ServiceProcess], bool] = lambda p: p.running  # noqa: E731
    findings.check(all(map(alive, [*system.apis, *system.workers])), "a survivor died")
    return {
        "created": len(answers),
        "answers": summarize(answers),
        "stored": len(stored),
        "delivered": len(by_mandate),
        "lost": len(lost),
        "duplicate_deliveries": sum(n - 1 for n in per_id.values()),
        "mandates_under_several_webhook_ids": len(several_ids),
        **relay,
    }
