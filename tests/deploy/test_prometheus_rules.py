"""Prometheus config and alert rules: promtool validates them, the guide's rules are intact.

promtool comes from the Debian `prometheus` package, which `make setup` installs; a missing
promtool fails these tests instead of skipping them.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from mandate_vault_shared.telemetry import names

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS = REPO / "deploy" / "prometheus"
CONFIG = PROMETHEUS / "prometheus.yml"
ALERTS = PROMETHEUS / "alerts.yml"
ALERT_TESTS = PROMETHEUS / "alerts.test.yml"
RUNBOOK_PREFIX = "https://github.com/mandate-vault/mandate-vault/blob/main/"

# The monitoring guide's six rules: (group, severity, team, for, expression). The operators'
# contract: these must not drift.
GUIDE_RULES = {
    "HighErrorRate": (
        "mandate_vault_critical",
        "critical",
        "backend",
        "5m",
        "sum(rate(errors_total[5m])) > 10",
    ),
    "DatabaseConnectionPoolExhausted": (
        "mandate_vault_critical",
        "critical",
        "backend",
        "1m",
        "db_connections_active >= 20",
    ),
    "HighJWTVerificationFailureRate": (
        "mandate_vault_critical",
        "warning",
        "security",
        "5m",
        '(sum(rate(jwt_verifications_total{status!="VALID"}[5m])) / '
        "sum(rate(jwt_verifications_total[5m]))) > 0.2",
    ),
    "WebhookDeliveryFailures": (
        "mandate_vault_warnings",
        "warning",
        "backend",
        "5m",
        'rate(webhook_deliveries_total{status="failed"}[5m]) > 5',
    ),
    "SlowResponseTimes": (
        "mandate_vault_warnings",
        "warning",
        "backend",
        "5m",
        "histogram_quantile(0.95, rate(http_request_duration_seconds_bucket[5m]) ) > 2.0",
    ),
    "HighAuthFailureRate": (
        "mandate_vault_warnings",
        "warning",
        "security",
        "5m",
        'sum(rate(auth_attempts_total{result="failed"}[5m])) > 10',
    ),
}
GUIDE_GROUP_INTERVALS = {"mandate_vault_critical": "30s", "mandate_vault_warnings": "1m"}
EXTRA_RULES = {
    "ServiceDown",
    "OutboxBacklogGrowing",
    "OutboxStalled",
    "WebhookDeadLetters",
    "WebhookConsumerLagHigh",
    "WebhookCircuitBreakerOpen",
    "WebhookJobsParked",
    "WebhookScheduledBacklogHigh",
    "WebhookEventsReconciled",
    "CollectorRefusingData",
    "CollectorExportFailing",
    "TelemetryDropping",
    "LockoutBurst",
    "RateLimitStoreUnavailable",
    "LoadShedding",
}
SERVICE_JOBS = {
    "mandate-vault-api": "api:8000",
    "mandate-vault-jwt-verifier": "jwt-verifier:8001",
    "mandate-vault-webhook-worker": "webhook-worker:8002",
}

_CONTRACT = (
    "APP_INFO",
    "HTTP_REQUESTS_TOTAL",
    "HTTP_REQUEST_DURATION",
    "ERRORS_TOTAL",
    "TELEMETRY_DROPPED_TOTAL",
    "MANDATES_CREATED_TOTAL",
    "MANDATES_ACTIVE",
    "JWT_VERIFICATIONS_TOTAL",
    "WEBHOOK_DELIVERIES_TOTAL",
    "WEBHOOK_DELIVERY_DURATION",
    "WEBHOOK_DEAD_LETTERS_TOTAL",
    "WEBHOOK_CONSUMER_LAG",
    "WEBHOOK_IN_FLIGHT",
    "WEBHOOK_SCHEDULED",
    "WEBHOOK_JOBS_PARKED_TOTAL",
    "WEBHOOK_BREAKERS_OPEN",
    "WEBHOOK_BREAKER_TRANSITIONS_TOTAL",
    "OUTBOX_BACKLOG",
    "OUTBOX_OLDEST_AGE",
    "AUTH_ATTEMPTS_TOTAL",
    "ACTIVE_USERS",
    "RATE_LIMITED_TOTAL",
    "RATE_LIMIT_FALLBACK_TOTAL",
    "CACHE_INVALIDATIONS_TOTAL",
    "WEBHOOK_EVENTS_RECONCILED_TOTAL",
    "KAFKA_CONSUMER_REBUILDS_TOTAL",
    "DB_CONNECTIONS_ACTIVE",
    "DB_QUERY_DURATION",
    # admission control (shared/web/admission.py)
    "REQUESTS_SHED_TOTAL",
    "ADMISSION_CONCURRENCY_LIMIT",
    "ADMISSION_IN_FLIGHT",
    "ADMISSION_QUEUED",
)
_HISTOGRAMS = ("HTTP_REQUEST_DURATION", "WEBHOOK_DELIVERY_DURATION", "DB_QUERY_DURATION")
CONTRACT_METRICS = {getattr(names, c) for c in _CONTRACT}
SERVICE_METRICS = (
    CONTRACT_METRICS
    | {getattr(names, h) + s for h in _HISTOGRAMS for s in ("_bucket", "_sum", "_count")}
    | {"up"}
)

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_KEYWORDS = {"by", "without", "on", "ignoring", "offset", "bool", "and", "or", "unless"}


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (functions, labels and keywords removed)."""
    text = _RANGES.sub("", _MATCHERS.sub("", _STRINGS.sub('""', expr)))
    text = _GROUPING.sub("", text)
    found = set()
    for match in _IDENT.finditer(text):
        before = text[match.start() - 1] if match.start() else " "
        if before.isdigit() or before == ".":
            continue
        if text[match.end() :].lstrip().startswith("(") or match.group(0) in _KEYWORDS:
            continue
        found.add(match.group(0))
    return found


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is not installed: `make setup` installs the Debian package prometheus"
        )
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)


def load(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    assert isinstance(data, dict)
    return data


def rules() -> dict[str, tuple[str, dict[str, Any]]]:
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for group in load(ALERTS)["groups"]:
        for rule in group["rules"]:
            assert "alert" in rule, f"unexpected recording rule in {group['name']}"
            assert rule["alert"] not in found, f"duplicate alert {rule['alert']}"
            found[rule["alert"]] = (group["name"], rule)
    return found


def normalize(expr: str) -> str:
    return " ".join(expr.split())


def test_promtool_check_config() -> None:
    result = run(promtool(), "check", "config", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_check_rules() -> None:
    result = run(promtool(), "check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_test_rules() -> None:
    result = run(promtool(), "test", "rules", str(ALERT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_silent_unit_test() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for group in load(ALERT_TESTS)["tests"]:
        for case in group.get("alert_rule_test") or []:
            (firing if case.get("exp_alerts") else silent).add(case["alertname"])
    alerts = set(rules())
    assert alerts - firing == set(), f"no firing test for {sorted(alerts - firing)}"
    assert alerts - silent == set(), f"no silent test for {sorted(alerts - silent)}"
    unknown = (firing | silent) - alerts
    assert not unknown, f"tests name alerts that do not exist: {sorted(unknown)}"


def test_guide_rules_are_verbatim() -> None:
    found = rules()
    for name, (group, severity, team, duration, expr) in GUIDE_RULES.items():
        assert name in found, f"guide rule {name} missing"
        actual_group, rule = found[name]
        assert actual_group == group, f"{name} belongs in group {group}"
        assert rule["labels"]["severity"] == severity, name
        assert rule["labels"]["team"] == team, name
        assert rule.get("for") == duration, name
        assert normalize(rule["expr"]) == normalize(expr), f"{name} expression changed"
    intervals = {g["name"]: g.get("interval") for g in load(ALERTS)["groups"]}
    for group, interval in GUIDE_GROUP_INTERVALS.items():
        assert intervals.get(group) == interval, group


def test_extra_rules_present() -> None:
    assert set(rules()) >= EXTRA_RULES
    assert normalize(rules()["ServiceDown"][1]["expr"]) == "up == 0"
    lockout = rules()["LockoutBurst"][1]["expr"]
    assert 'auth_attempts_total{result="locked_out"}' in lockout


def test_every_rule_is_routable_and_documented() -> None:
    for name, (_, rule) in rules().items():
        assert rule["labels"].get("severity") in {"critical", "warning"}, name
        annotations = rule["annotations"]
        assert annotations.get("summary"), name
        assert annotations.get("description"), name
        url = annotations.get("runbook_url", "")
        assert url.startswith(RUNBOOK_PREFIX + "docs/runbooks/"), f"{name}: {url}"
        runbook = REPO / url.removeprefix(RUNBOOK_PREFIX)
        assert runbook.is_file(), f"{name}: runbook {runbook.relative_to(REPO)} does not exist"
        assert name in runbook.read_text(encoding="utf-8"), f"{runbook.name} does not name {name}"


def test_alerts_use_only_known_metrics() -> None:
    for name, (_, rule) in rules().items():
        for metric in metric_names(rule["expr"]):
            assert metric in SERVICE_METRICS or metric.startswith("otelcol_"), (
                f"{name} uses unknown metric {metric}"
            )


def test_metric_name_extraction() -> None:
    assert metric_names(
        'histogram_quantile(0.95, sum by (le) (rate(a_bucket{x="y"}[5m]))) > 0.5'
    ) == {"a_bucket"}
    assert metric_names("sum(rate(b[5m])) by (endpoint) / on(job) c offset 5m") == {"b", "c"}


def test_scrape_jobs() -> None:
    config = load(CONFIG)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for job, target in SERVICE_JOBS.items():
        assert jobs[job]["metrics_path"] == "/api/v1/metrics", job
        targets = [t for sc in jobs[job]["static_configs"] for t in sc["targets"]]
        assert targets == [target], job
    collector = [t for sc in jobs["otel-collector"]["static_configs"] for t in sc["targets"]]
    assert collector == ["otel-collector:8888"]
    exported = jobs["otel-collector-exported"]
    assert [t for sc in exported["static_configs"] for t in sc["targets"]] == [
        "otel-collector:8889"
    ]
    assert config["rule_files"] == ["alerts.yml"]
    managers = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert managers == ["alertmanager:9093"]


def test_collector_exported_job_drops_directly_scraped_metrics() -> None:
    """Contract metrics reach Prometheus by scrape; a second copy via OTLP would double sums."""
    exported = next(
        job
        for job in load(CONFIG)["scrape_configs"]
        if job["job_name"] == "otel-collector-exported"
    )
    drops = [
        re.compile(rule["regex"])
        for rule in exported["metric_relabel_configs"]
        if rule.get("action") == "drop" and rule.get("source_labels") == ["__name__"]
    ]
    for metric in SERVICE_METRICS - {"up"}:
        assert any(d.fullmatch(metric) for d in drops), f"{metric} not dropped from :8889"
    assert not any(d.fullmatch("otelcol_exporter_queue_size") for d in drops)
