"""The live proof: the monitoring guide's PromQL, the dashboard and the alert rules, evaluated by
a real Prometheus that scrapes the real services after real traffic.

The three services run as processes on PostgreSQL and the Kafka-protocol broker; every one of
them exports OTLP to a closed port (a collector that is down), so `telemetry_dropped_total` is
real. Traffic: valid and rejected mandates (bad signature, unknown issuer, expired), failed
logins and a lockout, webhooks to a subscriber that answers 204 and to one that answers 500
until the event is dead-lettered, and 503s while the verifier is stopped.

Run with `-s` to see the tables of expressions and the values Prometheus returned.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import yaml

from mandate_vault_api.roles import Role
from mandate_vault_harness.broker import Broker
from mandate_vault_harness.issuer import Issuer
from mandate_vault_harness.metrics import scrape, value
from mandate_vault_harness.net import free_port
from mandate_vault_harness.prometheus import ALERT_RULES, DEPLOY, Monitoring, PromQLError, finite
from mandate_vault_harness.promql import strip_thresholds
from mandate_vault_harness.receiver import always
from mandate_vault_harness.system import PASSWORD, QUICK_API, QUICK_WORKER, System, Tenant

pytestmark = pytest.mark.timeout(240)

DASHBOARD = DEPLOY / "grafana" / "dashboards" / "mandate-vault.json"

# The monitoring guide's PromQL, verbatim: "Example PromQL queries", then "Dashboard Panels".
GUIDE_EXPRESSIONS: list[tuple[str, str]] = [
    ("Example: request rate", "rate(http_requests_total[5m])"),
    ("Example: error rate", 'rate(http_requests_total{status_code=~"5.."}[5m])'),
    (
        "Example: P95 response time",
        "histogram_quantile(0.95, rate(http_request_duration_seconds_bucket[5m]))",
    ),
    (
        "Example: JWT verification success rate",
        'sum(rate(jwt_verifications_total{status="VALID"}[5m])) /\nsum(rate(jwt_verifications_total[5m]))',
    ),
    ("Example: active mandates per tenant", "mandates_active"),
    ("Panel 1: Request Rate", "sum(rate(http_requests_total[5m])) by (endpoint, method)"),
    ("Panel 2: Error Rate", 'sum(rate(http_requests_total{status_code=~"5.."}[5m]))'),
    (
        "Panel 3: Response Time P50",
        "histogram_quantile(0.50, rate(http_request_duration_seconds_bucket[5m]))",
    ),
    (
        "Panel 3: Response Time P95",
        "histogram_quantile(0.95, rate(http_request_duration_seconds_bucket[5m]))",
    ),
    (
        "Panel 3: Response Time P99",
        "histogram_quantile(0.99, rate(http_request_duration_seconds_bucket[5m]))",
    ),
    ("Panel 4: JWT Verification Status", "sum(rate(jwt_verifications_total[5m])) by (status)"),
    ("Panel 5: Active Mandates", "sum(mandates_active) by (tenant_id)"),
    (
        "Panel 6: Webhook Success Rate",
        'sum(rate(webhook_deliveries_total{status="success"}[5m])) /\nsum(rate(webhook_deliveries_total[5m]))',
    ),
    ("Panel 7: Database Connections", "db_connections_active"),
    ("Panel 8: Authentication Failures", 'sum(rate(auth_attempts_total{result="failed"}[5m]))'),
]

# The guide's metric list with the labels it names; checked on every scraped series.
GUIDE_METRICS: dict[str, tuple[str, ...]] = {
    "mandate_vault_app_info": ("version", "environment"),
    "http_requests_total": ("method", "endpoint", "status_code"),
    "http_request_duration_seconds_bucket": ("method", "endpoint"),
    "mandates_created_total": ("tenant_id", "verification_status"),
    "mandates_active": ("tenant_id",),
    "jwt_verifications_total": ("status", "issuer"),
    "webhook_deliveries_total": ("event_type", "status"),
    "webhook_delivery_duration_seconds_bucket": (),
    "auth_attempts_total": ("result",),
    "active_users": ("tenant_id", "role"),
    "db_connections_active": (),
    "db_query_duration_seconds_bucket": ("operation",),
    "errors_total": ("error_type", "severity"),
}
# Label values the guide spells out, which this traffic must have produced.
GUIDE_LABEL_VALUES: dict[tuple[str, str], set[str]] = {
    ("auth_attempts_total", "result"): {"success", "failed", "locked_out"},
    ("webhook_deliveries_total", "status"): {"success", "failed"},
    ("jwt_verifications_total", "status"): {"VALID", "SIG_INVALID", "EXPIRED"},
    ("mandates_created_total", "verification_status"): {"VALID"},
    ("http_requests_total", "status_code"): {"201", "401", "429", "503"},
}

# Rules whose metrics cannot exist here: they are evaluated (and must load and evaluate without
# error) but cannot return data.
NO_LIVE_DATA = {
    "CollectorRefusingData": "no live data: the collector cannot run here (otelcol_* metrics)",
    "CollectorExportFailing": "no live data: the collector cannot run here (otelcol_* metrics)",
}
NEVER_EVALUATED = "0001-01-01T00:00:00Z"
# Gauges that are legitimately 0 on an idle system (no connection checked out between requests,
# an empty outbox, a consumer that has caught up). Every other expression must show a value > 0.
# The recording rules of the alerts file (SLO error ratios and objectives).
RECORDED_RULES = [
    rule["record"]
    for group in yaml.safe_load(ALERT_RULES.read_text(encoding="utf-8"))["groups"]
    for rule in group["rules"]
    if "record" in rule
]
MAY_BE_ZERO = {
    "Panel 7: Database Connections",
    "panel Database Connections [A]",
    "DatabaseConnectionPoolExhausted",
    "OutboxBacklogGrowing",
    "OutboxStalled",
    "WebhookConsumerLagHigh",
    "WebhookEventsReconciled",  # 0 unless the broker lost acknowledged events
    "RateLimitStoreUnavailable",  # 0 unless Redis is configured and unreachable
    # Admission control refuses nothing and queues nothing unless the service is overloaded.
    "LoadShedding",
    "panel Load shedding (refused 503s) [A]",
    "panel Admission: concurrency limit, in flight, queued [B]",
    "panel Admission: concurrency limit, in flight, queued [C]",
    "panel Webhook Parked Jobs and Scheduled Backlog [C]",  # jobs in flight: none when idle
    "panel Outbox backlog and age [A]",  # the relay keeps up: empty outbox
    "panel Outbox backlog and age [B]",
    "panel Webhook consumer lag [A]",  # the worker has caught up
    # Every create is answered well within 0.5 s here: no latency budget burns.
    "CreateMandateLatencyBurn1h",
    "CreateMandateLatencyBurn6h",
    "CreateMandateLatencyBurn1d",
    "CreateMandateLatencyBurn3d",
    # Nobody asks for a redelivery, and no endpoint fails for days, in this traffic.
    "panel Webhook Redeliveries and Disabled Endpoints [A]",
    "panel Webhook Redeliveries and Disabled Endpoints [B]",
    # Nothing is lost by the broker and no consumer group breaks in this traffic.
    "panel Reconciliation and consumer rebuilds [A]",
    "panel Reconciliation and consumer rebuilds [B]",
}
# Rules that return nothing while all is well (absent(): every service reports).
EMPTY_WHEN_HEALTHY = {"ServiceNotReporting"}

VALID_PER_ROUND = 3
BREAKER_THRESHOLD = 2 * VALID_PER_ROUND  # the first round's failures (2 attempts per event)
FAILING_PATH, OK_PATH = "/fail", "/ok"
LOCKED_ADDRESS = "intruder@acme.example"

# A counter series appears with its first increment, so Prometheus cannot see that one in
# rate()/increase(): every kind of event therefore happens in two rounds, with a scrape of the
# first round in between. These are the series the second round must find already scraped.
FIRST_ROUND_SERIES = [
    'jwt_verifications_total{status="VALID"}',
    'jwt_verifications_total{status="SIG_INVALID"}',
    'jwt_verifications_total{status="EXPIRED"}',
    'auth_attempts_total{result="failed"}',
    'auth_attempts_total{result="locked_out"}',
    'auth_attempts_total{result="success"}',
    'mandates_created_total{verification_status="VALID"}',
    'http_requests_total{endpoint="<unmatched>"}',
    "webhook_deliveries_total",
]


@dataclass
class Live:
    stack: System
    monitoring: Monitoring
    traffic: dict[str, Any] = field(default_factory=dict)


def _status_counts(statuses: list[int]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for status in statuses:
        counts[str(status)] = counts.get(str(status), 0) + 1
    return counts


def _add(traffic: dict[str, Any], what: str, statuses: list[int]) -> None:
    counts = traffic.setdefault(what, {})
    for status, n in _status_counts(statuses).items():
        counts[status] = counts.get(status, 0) + n


def wait_until_scraped(monitoring: Monitoring, selectors: list[str], timeout: float = 20) -> None:
    """Until Prometheus holds a sample of every selector (so the next increment shows)."""
    deadline = time.monotonic() + timeout
    while True:
        missing = [s for s in selectors if not monitoring.query(s)]
        if not missing:
            return
        if time.monotonic() > deadline:
            msg = f"Prometheus never scraped {missing}"
            raise AssertionError(msg)
        time.sleep(0.3)


def verifier_outage(
    stack: System, tenant: Tenant, bank: Issuer, monitoring: Monitoring
) -> list[int]:
    """Stop the verifier: creates answer 503 (errors_total), in two batches a scrape apart."""
    statuses = []
    assert stack.verifier is not None
    stack.verifier.stop()
    with stack.client(tenant) as client:
        for batch in range(2):
            statuses += [
                client.post("/api/v1/mandates", json={"vc_jwt": bank.mandate()}).status_code
                for _ in range(2)
            ]
            if batch == 0:
                wait_until_scraped(
                    monitoring, ["errors_total", 'http_requests_total{status_code="503"}']
                )
    stack.verifier.start()
    return statuses


def mandate_round(stack: System, tenant: Tenant, bank: Issuer, traffic: dict[str, Any]) -> None:
    forger = Issuer(did=bank.did, kid=bank.kid)  # right issuer and kid, wrong key
    stranger = Issuer(did="did:web:unknown-bank.example")
    with stack.client(tenant) as client:
        _add(
            traffic,
            "valid mandates",
            [
                client.post("/api/v1/mandates", json={"vc_jwt": bank.mandate()}).status_code
                for _ in range(VALID_PER_ROUND)
            ],
        )
        invalid = {
            "bad signature": forger.mandate(),
            "unknown issuer": stranger.mandate(),
            "expired": bank.mandate(issued_at=time.time() - 7200, expires_in=3600),
        }
        for name, token in invalid.items():
            response = client.post("/api/v1/mandates", json={"vc_jwt": token})
            body = response.json()
            traffic[f"mandate with {name}"] = (
                f"{response.status_code} {body.get('status')} {body.get('verification_status')}"
            )
        _add(traffic, "mandate list reads", [client.get("/api/v1/mandates").status_code])


def login_round(stack: System, tenant: Tenant, traffic: dict[str, Any], round_no: int) -> None:
    with httpx.Client(base_url=stack.api.url, timeout=10) as anonymous:

        def login(email: str, password: str) -> int:
            body = {"email": email, "password": password}
            return anonymous.post("/api/v1/auth/login", json=body).status_code

        _add(
            traffic,
            "logins with a wrong password",
            [login("nobody@acme.example", "wrong") for _ in range(2)],
        )
        # 6 bad passwords for one address: 5 failures, then locked out (429); later tries too.
        attempts = 6 if round_no == 0 else 2
        _add(
            traffic,
            f"bad passwords for {LOCKED_ADDRESS}",
            [login(LOCKED_ADDRESS, "guess") for _ in range(attempts)],
        )
        _add(traffic, "successful logins", [login(tenant.emails[Role.TENANT_ADMIN], PASSWORD)])
        _add(
            traffic, "unknown paths", [anonymous.get("/wp-login.php").status_code for _ in range(2)]
        )


def drive_traffic(
    stack: System, tenant: Tenant, bank: Issuer, monitoring: Monitoring
) -> dict[str, Any]:
    """Everything the guide's metrics describe, produced for real."""
    traffic: dict[str, Any] = {}
    wait_until_scraped(monitoring, ['count(up{job=~"mandate-vault-.*"} == 1) == 3'])
    stack.subscribe(tenant, OK_PATH, ["MandateCreated", "MandateVerificationFailed"])
    stack.subscribe(tenant, FAILING_PATH, ["MandateCreated"], script=always(500))

    # A verifier that is down: 503s (errors_total), then it comes back.
    traffic["creates while the verifier is down"] = _status_counts(
        verifier_outage(stack, tenant, bank, monitoring)
    )
    for round_no in range(2):
        mandate_round(stack, tenant, bank, traffic)
        login_round(stack, tenant, traffic, round_no)
        if round_no == 0:
            wait_until_scraped(monitoring, FIRST_ROUND_SERIES)

    # Webhooks: every MandateCreated reaches /ok; /fail answers 500: the first round's events
    # are dead-lettered (one retry after 0.2 s), their 6 failures open /fail's circuit breaker,
    # and the second round's events are parked behind it.
    stack.receiver.wait_for(
        lambda r: (
            len(r.at(OK_PATH)) >= 2 * (VALID_PER_ROUND + 3)
            and len(r.at(FAILING_PATH)) >= BREAKER_THRESHOLD
        ),
        timeout=30,
    )
    worker = stack.workers[0]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        samples = scrape(worker.url)
        parked = value(samples, "webhook_jobs_parked_total", reason="breaker_open")
        if value(samples, "webhook_dead_letters_total") >= VALID_PER_ROUND and parked > 0:
            break
        time.sleep(0.2)
    traffic["webhook deliveries"] = {
        f"{OK_PATH} (204)": len(stack.receiver.at(OK_PATH)),
        f"{FAILING_PATH} (500)": len(stack.receiver.at(FAILING_PATH)),
        "dead letters": value(samples, "webhook_dead_letters_total"),
        "parked behind the open breaker": parked,
    }
    return traffic


@pytest.fixture(scope="module")
def live(monitoring: Monitoring, broker: Broker) -> Iterator[Live]:
    bank = Issuer()
    collector_down = {
        # Nothing listens here: every export fails and is counted in telemetry_dropped_total.
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "1",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "OTEL_BLRP_SCHEDULE_DELAY": "200",
    }
    worker = {
        **QUICK_WORKER,
        "WORKER_RETRY_SCHEDULE_SECONDS": "0.2",
        "WORKER_LAG_INTERVAL_SECONDS": "0.5",
        "WORKER_BREAKER_FAILURE_THRESHOLD": str(BREAKER_THRESHOLD),
        "WORKER_BREAKER_COOLDOWN_SECONDS": "300",  # open for the rest of the test
    }
    with System(
        issuers=[bank],
        broker=broker,
        service_env=collector_down,
        api_tuning=QUICK_API,
        worker_tuning=worker,
    ) as stack:
        tenant = stack.add_tenant("acme-corp", users=True)
        stack.start_services()
        assert stack.verifier is not None
        monitoring.set_target("api", stack.api.url)
        monitoring.set_target("jwt-verifier", stack.verifier.url)
        monitoring.set_target("webhook-worker", stack.workers[0].url)
        started = time.monotonic()
        traffic = drive_traffic(stack, tenant, bank, monitoring)
        traffic["traffic took"] = f"{time.monotonic() - started:.1f} s"
        yield Live(stack, monitoring, traffic)


# --- evaluating and printing ---------------------------------------------------------------


def describe(result: list[dict[str, Any]], limit: int = 4) -> str:
    """A compact rendering of an instant vector: the value, or the top series by value."""
    if not result:
        return "(no data)"

    def number(raw: str) -> str:
        parsed = float(raw)
        if math.isnan(parsed):
            return "NaN"
        return f"{parsed:.4g}"

    def labels(metric: dict[str, str]) -> str:
        shown = {k: v for k, v in metric.items() if k not in ("__name__", "instance")}
        return ",".join(f"{k}={v}" for k, v in sorted(shown.items()))

    if len(result) == 1 and not labels(result[0]["metric"]):
        return number(result[0]["value"][1])
    ordered = sorted(
        result,
        key=lambda r: (not math.isfinite(float(r["value"][1])), -float(r["value"][1])),
    )
    nan = len(result) - len(finite(result))
    parts = [f"{{{labels(r['metric'])}}} {number(r['value'][1])}" for r in ordered[:limit]]
    more = f"; +{len(result) - limit} more" if len(result) > limit else ""
    nans = f" ({nan} NaN: series without requests in the window)" if nan else ""
    return f"{len(result)} series{nans}: " + "; ".join(parts) + more


def print_table(title: str, rows: list[tuple[str, str, str]]) -> None:
    print(f"\n=== {title} ===")
    for name, expr, shown in rows:
        print(f"- {name}\n    {' '.join(expr.split())}\n    -> {shown}")


def shows_traffic(name: str, result: list[dict[str, Any]]) -> bool:
    """A finite value, and one above zero unless `name` is an idle-may-be-zero gauge."""
    values = [float(r["value"][1]) for r in finite(result)]
    return bool(values) and (name in MAY_BE_ZERO or any(v > 0 for v in values))


def evaluate(
    monitoring: Monitoring,
    named: list[tuple[str, str]],
    accept: Callable[[str, list[dict[str, Any]]], bool] = shows_traffic,
    timeout: float = 45,
) -> dict[str, list[dict[str, Any]]]:
    """Query every (name, expr) until all are accepted or the time is up; results by name."""
    deadline = time.monotonic() + timeout
    while True:
        results = {name: monitoring.query(expr) for name, expr in named}
        if all(accept(name, results[name]) for name, _ in named) or time.monotonic() > deadline:
            return results
        time.sleep(0.5)


def without_traffic(
    named: list[tuple[str, str]], results: dict[str, list[dict[str, Any]]]
) -> list[str]:
    return [
        f"{name}: {'no data' if not finite(results[name]) else 'only zeros'}"
        for name, _ in named
        if not shows_traffic(name, results[name])
    ]


def dashboard_targets() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    found = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            walk(panel.get("panels", []))
            for target in panel.get("targets", []):
                source = target.get("datasource") or panel.get("datasource") or {}
                if source.get("type") == "prometheus":
                    found.append((f"panel {panel['title']} [{target['refId']}]", target["expr"]))

    walk(dashboard["panels"])
    for annotation in dashboard.get("annotations", {}).get("list", []):
        if (annotation.get("datasource") or {}).get("type") == "prometheus":
            found.append((f"annotation {annotation['name']}", annotation["expr"]))
    return found


def concrete(expr: str) -> str:
    """Grafana's interval variables replaced by concrete windows."""
    for variable, window in (
        ("$__rate_interval", "5m"),
        ("${__rate_interval}", "5m"),
        ("$__interval", "1m"),
        ("${__interval}", "1m"),
        ("$__range", "5m"),
    ):
        expr = expr.replace(variable, window)
    assert "$" not in expr, f"unhandled Grafana variable in {expr!r}"
    return expr


# --- the tests -------------------------------------------------------------------------------


def test_prometheus_scrapes_every_service_and_sees_alertmanager(live: Live) -> None:
    targets = live.monitoring.api("targets")["activeTargets"]
    health = {t["labels"]["job"]: t["health"] for t in targets}
    print_table(
        "scrape targets",
        [(job, f"{t['scrapeUrl']}", t["health"]) for t in targets for job in [t["labels"]["job"]]],
    )
    print("\n=== traffic driven ===")
    for what, counts in live.traffic.items():
        print(f"- {what}: {counts}")
    for job in live.monitoring.jobs:
        assert health.get(job) == "up", (job, targets)
    managers = live.monitoring.api("alertmanagers")["activeAlertmanagers"]
    assert [m["url"] for m in managers] == [f"{live.monitoring.alertmanager_url}/api/v2/alerts"]


def test_every_guide_expression_returns_data(live: Live) -> None:
    results = evaluate(live.monitoring, GUIDE_EXPRESSIONS)
    print_table(
        "monitoring guide PromQL (verbatim)",
        [(name, expr, describe(results[name])) for name, expr in GUIDE_EXPRESSIONS],
    )
    problems = without_traffic(GUIDE_EXPRESSIONS, results)
    assert not problems, (
        f"guide expressions without data: {problems}; targets: {live.monitoring.target_health()}"
    )


def recording_rules_evaluated(
    monitoring: Monitoring, count: int, timeout: float = 75
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The recording rules loaded, and those evaluated at least once, waiting (up to
    `timeout`) for all `count` to have been: their group runs every minute."""
    deadline = time.monotonic() + timeout
    while True:
        loaded = [
            rule
            for group in monitoring.api("rules", type="record")["groups"]
            for rule in group["rules"]
        ]
        evaluated = [r for r in loaded if not r["lastEvaluation"].startswith("0001-")]
        if len(evaluated) == count or time.monotonic() > deadline:
            return loaded, evaluated
        time.sleep(1)


def recorded_series_present(monitoring: Monitoring, timeout: float = 150) -> None:
    """Wait (up to `timeout`) until every recorded series has data. A group that runs every
    minute may first evaluate before two scrapes exist, record nothing, and only fill in at
    its next run."""
    deadline = time.monotonic() + timeout
    names = sorted(set(RECORDED_RULES))
    while True:
        names = [name for name in names if not monitoring.query(name)]
        if not names or time.monotonic() > deadline:
            return
        time.sleep(1)


def test_every_dashboard_target_returns_data(live: Live) -> None:
    # The SLO panels read recorded series: wait until the rules have recorded them.
    recorded_series_present(live.monitoring)
    targets = dashboard_targets()
    # 8 guide panels (3 quantiles), 2 SLO stats and 2 burn-rate panels, the webhook pipeline,
    # load shedding, telemetry drops, 1 annotation
    assert len(targets) >= 30
    named = [(name, concrete(expr)) for name, expr in targets]
    results = evaluate(live.monitoring, named)
    print_table(
        f"dashboard {DASHBOARD.relative_to(DEPLOY.parent)} (Prometheus targets)",
        [(name, expr, describe(results[name])) for name, expr in named],
    )
    print("  (the Logs panel queries Loki, which does not run here)")
    problems = without_traffic(named, results)
    assert not problems, (
        f"dashboard targets without data: {problems}; targets: {live.monitoring.target_health()}"
    )


def test_every_alert_rule_loads_evaluates_and_has_data(live: Live) -> None:
    monitoring = live.monitoring
    defined = {
        rule["alert"]: rule["expr"]
        for group in yaml.safe_load(ALERT_RULES.read_text(encoding="utf-8"))["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    assert set(NO_LIVE_DATA) <= set(defined)
    assert set(defined) >= EMPTY_WHEN_HEALTHY

    # Every group must have been evaluated at least once (30 s and 1 min intervals).
    deadline = time.monotonic() + 75
    while True:
        loaded = {
            rule["name"]: rule
            for group in monitoring.api("rules", type="alert")["groups"]
            for rule in group["rules"]
        }
        pending = [
            n
            for n, r in loaded.items()
            if r.get("lastEvaluation", NEVER_EVALUATED).startswith("0001-")
        ]
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert set(loaded) == set(defined), "alerts.yml and the loaded rules differ"
    assert not pending, f"never evaluated: {pending}"

    stripped = {name: strip_thresholds(expr) for name, expr in defined.items()}
    without_data = set(NO_LIVE_DATA) | EMPTY_WHEN_HEALTHY
    with_data = [(n, stripped[n]) for n in defined if n not in without_data]
    results = evaluate(monitoring, with_data)
    for name in without_data:
        results[name] = monitoring.query(stripped[name])  # must not error

    rows = []
    for name in defined:
        rule = loaded[name]
        note = NO_LIVE_DATA.get(name, "")
        rows.append(
            (
                f"{name} [health={rule['health']}, state={rule['state']}]",
                stripped[name],
                f"{describe(results[name])}{'  <- ' + note if note else ''}",
            )
        )
    print_table("alert rules (deploy/prometheus/alerts.yml), threshold removed", rows)

    unhealthy = {
        n: (r["health"], r.get("lastError"))
        for n, r in loaded.items()
        if r["health"] != "ok" or r.get("lastError")
    }
    assert not unhealthy, unhealthy
    problems = without_traffic(with_data, results)
    assert not problems, (
        f"alert rules whose metrics returned no data: {problems}; "
        f"targets: {monitoring.target_health()}; api running: {live.stack.api.running}"
    )
    # The list of rules without live data must stay honest.
    assert all(not results[n] for n in without_data)


def test_every_recording_rule_loads_and_evaluates(live: Live) -> None:
    """The SLO recording rules (error ratios over 5m..3d, objectives) run without error and
    give the SLO alerts and the dashboard's burn-rate panels their series."""
    defined = [
        (rule["record"], rule["labels"]["slo"])
        for group in yaml.safe_load(ALERT_RULES.read_text(encoding="utf-8"))["groups"]
        for rule in group["rules"]
        if "record" in rule
    ]
    loaded, evaluated = recording_rules_evaluated(live.monitoring, len(defined))
    assert len(loaded) == len(defined)
    assert len(evaluated) == len(defined), "recording rules never evaluated"
    unhealthy = [(r["name"], r.get("lastError")) for r in loaded if r["health"] != "ok"]
    assert not unhealthy, unhealthy
    expr = "slo:sli_error:ratio_rate5m"
    result = evaluate(live.monitoring, [(expr, expr)])[expr]
    print_table("SLO error ratios (5m)", [("by slo", expr, describe(result, 3))])
    assert {r["metric"]["slo"] for r in result} >= {"create-mandate-availability"}


def test_guide_metrics_carry_the_guide_labels(live: Live) -> None:
    monitoring = live.monitoring
    results = evaluate(
        monitoring, [(m, m) for m in GUIDE_METRICS], accept=lambda _name, result: bool(result)
    )
    rows, problems = [], []
    for metric, required in GUIDE_METRICS.items():
        series = results[metric]
        if not series:
            problems.append(f"{metric}: no series")
            continue
        jobs = sorted({s["metric"].get("job", "?") for s in series})
        keys = sorted(
            {
                frozenset(k for k in s["metric"] if k not in ("__name__", "job", "instance", "le"))
                for s in series
            },
            key=sorted,
        )
        for key_set in keys:
            if not set(required) <= key_set:
                problems.append(
                    f"{metric}: labels {sorted(key_set)} lack {sorted(set(required) - key_set)}"
                )
        rows.append((metric, f"jobs {jobs}", f"label sets {[sorted(k) for k in keys]}"))
    for (metric, label), expected in GUIDE_LABEL_VALUES.items():
        seen = {s["metric"].get(label) for s in results.get(metric) or monitoring.query(metric)}
        if not expected <= seen:
            problems.append(
                f"{metric}{{{label}}}: saw {sorted(v for v in seen if v)}, expected {sorted(expected)}"
            )
    print_table("guide metrics: emitting jobs and label sets", rows)
    assert not problems, problems


@pytest.mark.parametrize(
    ("histogram", "services"),
    [
        ("http_request_duration_seconds_bucket", {"api", "jwt-verifier"}),
        ("http_server_request_duration_seconds_bucket", {"api", "jwt-verifier"}),
        ("webhook_delivery_duration_seconds_bucket", {"webhook-worker"}),  # its HTTP is probes
    ],
)
def test_latency_exemplars_point_at_traces(live: Live, histogram: str, services: set[str]) -> None:
    """Prometheus (exemplar storage on) keeps the trace ids the services attach to their latency
    histograms in the OpenMetrics scrape: the Grafana exemplar link has a trace to open."""
    found = live.monitoring.exemplars(histogram)
    jobs = {series["seriesLabels"]["job"] for series in found}
    wanted = {job for job, service in live.monitoring.jobs.items() if service in services}
    trace_ids = {
        exemplar["labels"].get("trace_id", "")
        for series in found
        for exemplar in series["exemplars"]
    }
    print_table("exemplars", [(histogram, f"{len(trace_ids)} trace ids", ", ".join(sorted(jobs)))])
    assert jobs == wanted
    assert trace_ids
    assert all(len(trace_id) == 32 and int(trace_id, 16) for trace_id in trace_ids)


def test_outage_telemetry_is_counted(live: Live) -> None:
    """The closed OTLP port is a collector that is down: every service counts what it drops."""
    try:
        expr = "sum by (job, signal, reason) (telemetry_dropped_total)"
        result = evaluate(live.monitoring, [(expr, expr)])[expr]
    except PromQLError as exc:  # pragma: no cover - surfaced as a failure below
        pytest.fail(str(exc))
    print_table("telemetry dropped (collector down)", [("by job", expr, describe(result, 9))])
    assert {r["metric"]["job"] for r in result} == set(live.monitoring.jobs)


def test_firing_alerts_reach_alertmanager_routed_by_severity(live: Live) -> None:
    """Whatever Prometheus reports firing has reached Alertmanager, routed by the repository's
    alertmanager.yml: critical -> pagerduty, warning -> slack, anything else -> default.
    (Which alerts fire depends on when the 1-minute groups last ran; often WebhookDeadLetters,
    which has no `for`.)"""
    routes = {"critical": "pagerduty", "warning": "slack"}
    firing = {
        alert["labels"]["alertname"]: alert["labels"].get("severity", "")
        for alert in live.monitoring.api("alerts")["alerts"]
        if alert["state"] == "firing"
    }
    deadline = time.monotonic() + 10
    while True:
        received = {
            alert["labels"]["alertname"]: sorted(r["name"] for r in alert["receivers"])
            for alert in httpx.get(
                f"{live.monitoring.alertmanager_url}/api/v2/alerts", timeout=5
            ).json()
        }
        if set(firing) <= set(received) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    print_table(
        "alerts firing in Prometheus -> Alertmanager receivers",
        [
            (name, f"severity={severity}", str(received.get(name, "(not received)")))
            for name, severity in sorted(firing.items())
        ]
        or [("(none firing at this moment)", "", "")],
    )
    for name, severity in firing.items():
        assert received.get(name) == [routes.get(severity, "default")], (name, received)


def test_an_slo_page_silences_the_tickets_of_its_slo(live: Live) -> None:
    """The repository's inhibition in a real Alertmanager: while an SLO page (critical) fires,
    the tickets (warning) of the same `slo` are suppressed, and a ticket of another SLO is not.
    A page and two tickets are posted to its API (Prometheus' own SLO pages depend on when the
    1-minute groups ran); any real SLO tickets beside a real page are checked too."""
    url = f"{live.monitoring.alertmanager_url}/api/v2/alerts"
    probe = [
        {"alertname": "ProbeBurn1h", "severity": "critical", "slo": "probe-a"},
        {"alertname": "ProbeBurn1d", "severity": "warning", "slo": "probe-a"},
        {"alertname": "ProbeBurn3d", "severity": "warning", "slo": "probe-b"},
    ]
    response = httpx.post(url, json=[{"labels": labels} for labels in probe], timeout=5)
    assert response.status_code == 200, response.text
    deadline = time.monotonic() + 10
    while True:
        alerts = httpx.get(url, timeout=5).json()
        state = {a["labels"]["alertname"]: a["status"]["state"] for a in alerts}
        if state.get("ProbeBurn1d") == "suppressed" or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    pages = {
        a["labels"]["slo"]
        for a in alerts
        if a["labels"].get("severity") == "critical" and "slo" in a["labels"]
    }
    tickets = [
        a for a in alerts if a["labels"].get("severity") == "warning" and "slo" in a["labels"]
    ]
    print_table(
        "SLO tickets in Alertmanager (a page of the same slo must suppress them)",
        [(a["labels"]["alertname"], a["labels"]["slo"], a["status"]["state"]) for a in tickets],
    )
    assert state["ProbeBurn1h"] == "active"
    assert state["ProbeBurn3d"] == "active", "another SLO's ticket is not suppressed"
    for ticket in tickets:
        suppressed = ticket["status"]["state"] == "suppressed"
        assert suppressed == (ticket["labels"]["slo"] in pages), ticket
