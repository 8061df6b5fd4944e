"""Monitoring demo: drive the running stack, then read what each guide metric shows.

    make run                              # in one terminal
    uv run python demo_monitoring_system.py   # in another (or: make demo)

Against the api, jwt-verifier and webhook-worker of `make run` (127.0.0.1:8000/8001/8002;
--api/--verifier/--worker or MV_DEMO_API_URL/... override them) it:

1. gets credentials: --email/--password (MV_DEMO_EMAIL/MV_DEMO_PASSWORD), or else bootstraps
   an admin of the tenant `monitoring-demo` trusting did:web:demo-bank.example with
   `mandate-vault bootstrap` (same database as make run: var/mandate_vault.db, or
   API_DATABASE_URL), with a fresh password passed in MV_BOOTSTRAP_PASSWORD;
2. subscribes a local webhook receiver (one path answering 204, one answering 500);
3. submits valid mandates signed by the demo issuer (the harness's `issuer`) and invalid ones
   (bad signature, unknown issuer, expired), fails some logins and locks one address out;
4. scrapes every service's GET /api/v1/metrics before and after, and prints what each metric
   of the monitoring guide shows: totals since the service started and, in brackets, this run.

Standard library, httpx and the workspace's prometheus-client parser; nothing is written
except what `mandate-vault bootstrap` stores (a user) and what the traffic itself creates.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from mandate_vault_harness.issuer import DEMO_ISSUER, DEMO_KID, Issuer, demo_key_file

ROOT = Path(__file__).resolve().parent
DEMO_TENANT = "monitoring-demo"
UNKNOWN_ISSUER = "did:web:unknown-bank.example"
EVENTS_OK = ["MandateCreated", "MandateVerificationFailed"]
EVENTS_FAILING = ["MandateCreated"]
SECTIONS = (
    "Requests by endpoint",
    "Error rate",
    "Latency p50/p95/p99",
    "JWT verification success rate",
    "Active mandates per tenant",
    "Webhook success rate",
    "Database connections",
    "Authentication failures",
    "Outbox backlog",
    "Consumer lag",
    "Dead letters",
)

Labels = tuple[tuple[str, str], ...]


def load_demo_issuer(key_file: Path | None) -> Issuer:
    """The demo issuer `make run` trusts; `key_file` replaces its var/ key."""
    path = key_file or demo_key_file()
    return Issuer.from_pem_file(path, DEMO_ISSUER, DEMO_KID, create=True)


# --- metrics --------------------------------------------------------------------------------


@dataclass
class Scrape:
    """Samples of one /api/v1/metrics answer: name -> {labels: value}."""

    samples: dict[str, dict[Labels, float]] = field(default_factory=lambda: defaultdict(dict))

    @classmethod
    def parse(cls, text: str) -> Scrape:
        scrape = cls()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                scrape.samples[sample.name][tuple(sorted(sample.labels.items()))] = sample.value
        return scrape

    def series(self, name: str) -> dict[Labels, float]:
        return self.samples.get(name, {})

    def total(self, name: str, **match: str) -> float:
        return sum(
            value
            for labels, value in self.series(name).items()
            if all(dict(labels).get(k) == v for k, v in match.items())
        )

    def by(self, name: str, *keys: str) -> dict[tuple[str, ...], float]:
        grouped: dict[tuple[str, ...], float] = defaultdict(float)
        for labels, value in self.series(name).items():
            grouped[tuple(dict(labels).get(k, "") for k in keys)] += value
        return dict(grouped)


def delta(after: Scrape, before: Scrape | None) -> Scrape:
    """Counter increase between two scrapes (a series that restarted counts from zero)."""
    out = Scrape()
    for name, series in after.samples.items():
        for labels, value in series.items():
            old = before.series(name).get(labels, 0.0) if before else 0.0
            out.samples[name][labels] = value - old if value >= old else value
    return out


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """histogram_quantile over cumulative bucket counts (upper bound -> count), as Prometheus
    computes it: linear interpolation inside the bucket holding the rank."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    total = buckets[bounds[-1]]
    rank = q * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if bound == float("inf"):
                return lower
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def histogram(
    scrape: Scrape, name: str, keys: tuple[str, ...]
) -> dict[tuple[str, ...], dict[float, float]]:
    grouped: dict[tuple[str, ...], dict[float, float]] = defaultdict(lambda: defaultdict(float))
    for labels, value in scrape.series(f"{name}_bucket").items():
        label_map = dict(labels)
        grouped[tuple(label_map.get(k, "") for k in keys)][float(label_map["le"])] += value
    return {k: dict(v) for k, v in grouped.items()}


# --- a local webhook receiver ------------------------------------------------------------------


@dataclass
class Receiver:
    """Answers 204 on /hooks and 500 on /hooks-failing; checks signatures when it can."""

    port: int = 0
    secrets: dict[str, str] = field(default_factory=dict)
    received: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    signatures: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                verdict = receiver.check(self.path, body, headers)
                with receiver.lock:
                    receiver.received[self.path] += 1
                    receiver.signatures[verdict] += 1
                self.send_response(500 if self.path.endswith("-failing") else 204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def check(self, path: str, body: bytes, headers: dict[str, str]) -> str:
        secret = self.secrets.get(path)
        if secret is None:
            return "unknown path"
        try:
            Webhook(secret).verify(body, headers, json_parse=False)
        except WebhookVerificationError:
            return "INVALID"
        return "valid"

    def count(self, path: str) -> int:
        with self.lock:
            return self.received.get(path, 0)

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


# --- the demo ----------------------------------------------------------------------------------


@dataclass
class Demo:
    api: str
    verifier: str
    worker: str
    issuer: Issuer
    client: httpx.Client = field(init=False)
    headers: dict[str, str] = field(default_factory=dict)
    tenant_id: str = ""
    done: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.client = httpx.Client(timeout=15)

    @property
    def services(self) -> dict[str, str]:
        return {"api": self.api, "jwt-verifier": self.verifier, "webhook-worker": self.worker}

    def check_reachable(self) -> None:
        down = []
        for name, url in self.services.items():
            try:
                self.client.get(f"{url}/healthz", timeout=3).raise_for_status()
            except httpx.HTTPError as exc:
                down.append(f"{name} at {url}: {exc}")
        if down:
            sys.exit("not reachable (start the stack with `make run`):\n  " + "\n  ".join(down))

    def scrape(self) -> dict[str, Scrape]:
        scrapes = {}
        for name, url in self.services.items():
            response = self.client.get(f"{url}/api/v1/metrics")
            response.raise_for_status()
            scrapes[name] = Scrape.parse(response.text)
        return scrapes

    # credentials
    def bootstrap(self) -> tuple[str, str]:
        email = f"demo-{uuid.uuid4().hex[:8]}@{DEMO_TENANT}.example"
        password = secrets.token_urlsafe(18)
        command = [
            sys.executable, "-m", "mandate_vault_api.cli", "bootstrap",
            "--tenant-id", DEMO_TENANT, "--tenant-name", "Monitoring demo",
            "--admin-email", email, "--issuer", self.issuer.did,
        ]  # fmt: skip
        result = subprocess.run(  # noqa: S603 - fixed arguments, this interpreter
            command,
            cwd=ROOT,
            env={**os.environ, "MV_BOOTSTRAP_PASSWORD": password},
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if result.returncode != 0:
            sys.exit(f"mandate-vault bootstrap failed:\n{result.stdout}{result.stderr}")
        for line in result.stdout.splitlines():
            print(f"  bootstrap: {line}")
        return email, password

    def login(self, email: str, password: str) -> None:
        response = self.client.post(
            f"{self.api}/api/v1/auth/login", json={"email": email, "password": password}
        )
        if response.status_code != 200:
            sys.exit(f"login as {email} failed: {response.status_code} {response.text}")
        self.headers = {"Authorization": f"Bearer {response.json()['access_token']}"}
        me = self.client.get(f"{self.api}/api/v1/auth/me", headers=self.headers).json()
        self.tenant_id = me["tenant_id"]
        print(f"  logged in as {email} (tenant {self.tenant_id})")

    # traffic
    def subscribe(self, receiver: Receiver, path: str, events: list[str]) -> str:
        response = self.client.post(
            f"{self.api}/api/v1/webhooks",
            headers=self.headers,
            json={"url": receiver.url(path), "event_types": events},
        )
        if response.status_code != 201:
            sys.exit(f"webhook subscription failed: {response.status_code} {response.text}")
        body = response.json()
        receiver.secrets[path] = body["secret"]
        return str(body["id"])

    def unsubscribe(self, subscription_id: str) -> None:
        self.client.delete(f"{self.api}/api/v1/webhooks/{subscription_id}", headers=self.headers)

    def call(self, method: str, path: str, **kwargs: Any) -> tuple[int | str, Any]:
        """One request to the api: (status, JSON body or None); a transport error is reported
        by its name instead of ending the demo (a 500 can close the connection)."""
        try:
            response = self.client.request(method, f"{self.api}{path}", **kwargs)
        except httpx.HTTPError as exc:
            return type(exc).__name__, None
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, None

    def submit(self, token: str) -> str:
        """POST a mandate; "<http status> <mandate status>/<verification status>"."""
        status, body = self.call(
            "POST", "/api/v1/mandates", headers=self.headers, json={"vc_jwt": token}
        )
        if not isinstance(status, int) or status >= 400 or not isinstance(body, dict):
            error = body.get("error", "") if isinstance(body, dict) else ""
            return f"{status} {error}".strip()
        return f"{status} {body['status']}/{body['verification_status']}"

    def tally(self, what: str, outcome: object) -> None:
        counts = self.done.setdefault(what, defaultdict(int))
        counts[str(outcome)] += 1

    def mint(self) -> str:
        return self.issuer.mandate(
            subject="did:example:customer-123", amount="100.00", expires_in=30 * 86_400
        )

    def expired_token(self) -> str:
        """Signed by the demo issuer, issued two hours ago, expired one hour ago."""
        return self.issuer.mandate(
            subject="did:example:customer-123", issued_at=time.time() - 7200, expires_in=3600
        )

    def foreign_token(self, issuer: str, kid: str) -> str:
        """A token the verifier must reject: signed by a key nobody trusts."""
        return Issuer(did=issuer, kid=kid).mandate(subject="did:example:customer-123")

    def drive(self, valid: int) -> None:
        for _ in range(valid):
            self.tally("valid mandates", self.submit(self.mint()))
        self.tally(
            "bad signature", self.submit(self.foreign_token(self.issuer.did, self.issuer.kid))
        )
        self.tally("unknown issuer", self.submit(self.foreign_token(UNKNOWN_ISSUER, "k1")))
        self.tally("expired", self.submit(self.expired_token()))
        for _ in range(2):
            status, _ = self.call("GET", "/api/v1/mandates", headers=self.headers)
            self.tally("mandate list reads", status)
        nobody = f"nobody-{uuid.uuid4().hex[:6]}@{DEMO_TENANT}.example"
        intruder = f"intruder-{uuid.uuid4().hex[:6]}@{DEMO_TENANT}.example"
        for email, tries, what in (
            (nobody, 3, "wrong passwords"),
            (intruder, 6, "lockout: 6 bad passwords"),
        ):
            for n in range(tries):
                body = {"email": email, "password": f"guess-{n}"}
                self.tally(what, self.call("POST", "/api/v1/auth/login", json=body)[0])
        self.tally("unknown path", self.call("GET", "/wp-login.php")[0])

    def wait(self, what: str, condition: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(0.25)
        print(f"  (gave up waiting for {what} after {timeout:.0f} s)")
        return False


# --- the summary ---------------------------------------------------------------------------


def fmt(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.3f}"


def run_note(total: float, this_run: float) -> str:
    return f"{fmt(total)} (this run +{fmt(this_run)})"


def ratio(part: float, whole: float) -> str:
    return "n/a (nothing counted)" if whole <= 0 else f"{100 * part / whole:.1f} %"


def latency(buckets: dict[float, float]) -> str:
    p50, p95, p99 = (1000 * (quantile(q, buckets) or 0.0) for q in (0.5, 0.95, 0.99))
    count = fmt(buckets.get(float("inf"), 0))
    return f"n={count:<5} p50 {p50:7.1f} ms  p95 {p95:7.1f} ms  p99 {p99:7.1f} ms"


@dataclass
class Summary:
    """What each guide metric shows; `run` holds the increase during this demo."""

    after: dict[str, Scrape]
    run: dict[str, Scrape]
    tenant_id: str

    def print(self) -> None:
        sections: list[tuple[str, str, Callable[[], list[str]]]] = [
            (
                SECTIONS[0],
                "sum(rate(http_requests_total[5m])) by (endpoint, method)",
                self.requests,
            ),
            (SECTIONS[1], 'sum(rate(http_requests_total{status_code=~"5.."}[5m]))', self.errors),
            (
                SECTIONS[2],
                "histogram_quantile(0.95, rate(http_request_duration_seconds_bucket[5m]))",
                self.latency,
            ),
            (
                SECTIONS[3],
                'sum(rate(jwt_verifications_total{status="VALID"}[5m])) /\n'
                "           sum(rate(jwt_verifications_total[5m]))",
                self.jwt,
            ),
            (SECTIONS[4], "sum(mandates_active) by (tenant_id)", self.mandates),
            (
                SECTIONS[5],
                'sum(rate(webhook_deliveries_total{status="success"}[5m])) /\n'
                "           sum(rate(webhook_deliveries_total[5m]))",
                self.webhooks,
            ),
            (SECTIONS[6], "db_connections_active", self.connections),
            (SECTIONS[7], 'sum(rate(auth_attempts_total{result="failed"}[5m]))', self.auth),
            (SECTIONS[8], "outbox_backlog, outbox_oldest_unpublished_age_seconds", self.outbox),
            (SECTIONS[9], "sum by (topic) (webhook_consumer_lag)", self.lag),
            (
                SECTIONS[10],
                "sum by (event_type) (increase(webhook_dead_letters_total[10m]))",
                self.dead_letters,
            ),
            (
                "Telemetry dropped",
                "sum by (job, signal, reason) (telemetry_dropped_total)",
                self.drops,
            ),
        ]
        for title, promql, lines in sections:
            print(f"\n## {title}\n   PromQL: {promql}")
            for line in lines() or ["(no series yet)"]:
                print(f"   {line}")

    def requests(self) -> list[str]:
        lines = []
        for service, scrape in self.after.items():
            counts = scrape.by("http_requests_total", "method", "endpoint")
            recent = self.run[service].by("http_requests_total", "method", "endpoint")
            for key, total in sorted(counts.items(), key=lambda kv: -kv[1]):
                method, endpoint = key
                note = run_note(total, recent.get(key, 0))
                lines.append(f"{service:<15}{method:<7}{endpoint:<40}{note}")
        return lines

    def errors(self) -> list[str]:
        lines = []
        for service, scrape in self.after.items():
            statuses = scrape.by("http_requests_total", "status_code")
            recent = self.run[service].by("http_requests_total", "status_code")
            errors = sum(v for (code,), v in statuses.items() if code.startswith("5"))
            recent_errors = sum(v for (code,), v in recent.items() if code.startswith("5"))
            everything = sum(statuses.values())
            lines.append(
                f"{service:<15}5xx {fmt(errors)} of {fmt(everything)} = {ratio(errors, everything)}"
                f" (this run {ratio(recent_errors, sum(recent.values()))})"
            )
            by_type = scrape.by("errors_total", "error_type", "severity")
            lines += [
                f"{'':<15}errors_total{{error_type={kind}, severity={severity}}} {fmt(n)}"
                for (kind, severity), n in sorted(by_type.items())
            ]
        return lines

    def latency(self) -> list[str]:
        lines = []
        for service in self.after:
            per_endpoint = histogram(
                self.run[service], "http_request_duration_seconds", ("method", "endpoint")
            )
            overall: dict[float, float] = defaultdict(float)
            for (method, endpoint), buckets in sorted(per_endpoint.items()):
                for bound, count in buckets.items():
                    overall[bound] += count
                if buckets.get(float("inf"), 0) > 0:
                    lines.append(f"{service:<15}{method:<7}{endpoint:<40}{latency(buckets)}")
            if overall.get(float("inf"), 0) > 0:
                lines.append(f"{service:<15}{'(all endpoints)':<47}{latency(overall)}")
        if lines:
            lines.append("(this run's requests; interpolated inside buckets as Prometheus does)")
        return lines

    def jwt(self) -> list[str]:
        statuses = self.after["jwt-verifier"].by("jwt_verifications_total", "status")
        recent = self.run["jwt-verifier"].by("jwt_verifications_total", "status")
        valid, everything = statuses.get(("VALID",), 0), sum(statuses.values())
        if not everything:
            return []
        recent_rate = ratio(recent.get(("VALID",), 0), sum(recent.values()))
        lines = [
            f"success rate {ratio(valid, everything)} ({fmt(valid)} of {fmt(everything)});"
            f" this run {recent_rate}"
        ]
        return lines + [
            f"status={status:<24}{run_note(n, recent.get((status,), 0))}"
            for (status,), n in sorted(statuses.items())
        ]

    def mandates(self) -> list[str]:
        api = self.after["api"]
        lines = [
            f"tenant_id={tenant:<28}{fmt(n)}{'   <- this demo' if tenant == self.tenant_id else ''}"
            for (tenant,), n in sorted(api.by("mandates_active", "tenant_id").items())
        ]
        recent = self.run["api"].by("mandates_created_total", "verification_status")
        return lines + [
            f"created, verification_status={status:<16}{run_note(n, recent.get((status,), 0))}"
            for (status,), n in sorted(
                api.by("mandates_created_total", "verification_status").items()
            )
        ]

    def webhooks(self) -> list[str]:
        worker = self.after["webhook-worker"]
        deliveries = worker.by("webhook_deliveries_total", "status")
        recent = self.run["webhook-worker"].by("webhook_deliveries_total", "status")
        ok, attempts = deliveries.get(("success",), 0), sum(deliveries.values())
        if not attempts:
            return []
        recent_rate = ratio(recent.get(("success",), 0), sum(recent.values()))
        lines = [
            f"success rate {ratio(ok, attempts)} ({fmt(ok)} of {fmt(attempts)} attempts);"
            f" this run {recent_rate}"
        ]
        lines += [
            f"event_type={event:<26}status={status:<8}{fmt(n)}"
            for (event, status), n in sorted(
                worker.by("webhook_deliveries_total", "event_type", "status").items()
            )
        ]
        delivery = histogram(self.run["webhook-worker"], "webhook_delivery_duration_seconds", ())
        if delivery.get((), {}).get(float("inf"), 0) > 0:
            lines.append(f"delivery latency this run: {latency(delivery[()])}")
        return lines

    def connections(self) -> list[str]:
        return [
            f"{service:<15}{fmt(scrape.total('db_connections_active'))} checked out now"
            for service, scrape in self.after.items()
            if scrape.series("db_connections_active")
        ]

    def auth(self) -> list[str]:
        attempts = self.after["api"].by("auth_attempts_total", "result")
        recent = self.run["api"].by("auth_attempts_total", "result")
        return [
            f"result={result:<12}{run_note(n, recent.get((result,), 0))}"
            for (result,), n in sorted(attempts.items())
        ]

    def outbox(self) -> list[str]:
        api = self.after["api"]
        if not api.series("outbox_backlog"):
            return ["(reported by the api replica holding the gauge lease, not yet by this one)"]
        age = api.total("outbox_oldest_unpublished_age_seconds")
        return [f"unpublished events {fmt(api.total('outbox_backlog'))}, oldest {age:.1f} s"]

    def lag(self) -> list[str]:
        lags = self.after["webhook-worker"].by("webhook_consumer_lag", "topic")
        lines = [f"topic={topic:<24}lag {fmt(n)}" for (topic,), n in sorted(lags.items())]
        if lines:
            lines.append("(measured every WORKER_LAG_INTERVAL_SECONDS, 5 s by default)")
        return lines

    def dead_letters(self) -> list[str]:
        dead = self.after["webhook-worker"].by("webhook_dead_letters_total", "event_type")
        recent = self.run["webhook-worker"].by("webhook_dead_letters_total", "event_type")
        if not dead:
            return [
                "none (with make run's retry schedule, 5 s, 5 min, 30 min, ..., a failing",
                "subscriber reaches the dead-letter topic only after hours)",
            ]
        return [
            f"event_type={event:<26}{run_note(n, recent.get((event,), 0))}"
            for (event,), n in sorted(dead.items())
        ]

    def drops(self) -> list[str]:
        lines = [
            f"{service:<15}signal={signal:<8}reason={reason:<14}{fmt(n)}"
            for service, scrape in self.after.items()
            for (signal, reason), n in sorted(
                scrape.by("telemetry_dropped_total", "signal", "reason").items()
            )
        ]
        return lines or ["nothing dropped (no OTLP endpoint set, or the collector takes it all)"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    env = os.environ.get
    parser.add_argument("--api", default=env("MV_DEMO_API_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--verifier", default=env("MV_DEMO_VERIFIER_URL", "http://127.0.0.1:8001"))
    parser.add_argument("--worker", default=env("MV_DEMO_WORKER_URL", "http://127.0.0.1:8002"))
    parser.add_argument("--email", default=env("MV_DEMO_EMAIL"))
    parser.add_argument("--password", default=env("MV_DEMO_PASSWORD"))
    parser.add_argument("--issuer-key", type=Path, help="the demo issuer's PEM key (default var/)")
    parser.add_argument("--mandates", type=int, default=5, help="valid mandates to submit")
    parser.add_argument(
        "--wait", type=float, default=20, help="seconds to wait for webhooks/gauges"
    )
    args = parser.parse_args(argv)
    if bool(args.email) != bool(args.password):
        parser.error("--email and --password go together")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    demo = Demo(
        args.api.rstrip("/"),
        args.verifier.rstrip("/"),
        args.worker.rstrip("/"),
        load_demo_issuer(args.issuer_key),
    )
    print("# Mandate Vault monitoring demo")
    demo.check_reachable()
    before = demo.scrape()
    email, password = (args.email, args.password) if args.email else demo.bootstrap()
    demo.login(email, password)

    receiver = Receiver().start()
    subscriptions = [
        demo.subscribe(receiver, "/hooks", EVENTS_OK),
        demo.subscribe(receiver, "/hooks-failing", EVENTS_FAILING),
    ]
    print(f"  webhook receiver: {receiver.url('/hooks')} answers 204, /hooks-failing 500")
    try:
        demo.drive(args.mandates)
        expected = args.mandates + 3  # every mandate reaches /hooks (created or failed)
        demo.wait(
            "webhook deliveries",
            lambda: receiver.count("/hooks") >= expected and receiver.count("/hooks-failing") >= 1,
            args.wait,
        )
        tenant = (demo.tenant_id,)
        active_before = before["api"].by("mandates_active", "tenant_id").get(tenant, 0)
        activated = demo.done.get("valid mandates", {}).get("201 ACTIVE/VALID", 0)
        demo.wait(
            "mandates_active to count them (refreshed every API_GAUGE_REFRESH_INTERVAL_SECONDS)",
            lambda: (
                demo.scrape()["api"].by("mandates_active", "tenant_id").get(tenant, 0)
                >= active_before + activated
            ),
            args.wait,
        )
    finally:
        for subscription in subscriptions:
            demo.unsubscribe(subscription)
        receiver.stop()

    print("\n# What the demo did")
    for what, outcomes in demo.done.items():
        print(f"   {what:<28}{json.dumps(dict(outcomes))}")
    print(f"   {'webhooks received':<28}{json.dumps(dict(receiver.received))}")
    print(f"   {'webhook signatures':<28}{json.dumps(dict(receiver.signatures))}")
    print("\n# What the metrics show (GET /api/v1/metrics of each service)")
    print("  totals since each service started; (this run +N) is the increase during the demo")
    after = demo.scrape()
    run = {name: delta(after[name], before.get(name)) for name in after}
    Summary(after, run, demo.tenant_id).print()
    print("\nDone. Prometheus scraping these endpoints gives the same figures through the")
    print("guide's PromQL (docs/monitoring.md).")


if __name__ == "__main__":
    main()
