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
# SLO burn-rate alerts: the page pairs (1h, 6h) and the ticket pairs (1d, 3d), each file with
# the evaluation step its windows need.
SLO_TESTS = (PROMETHEUS / "slo-page.test.yml", PROMETHEUS / "slo-ticket.test.yml")
RULE_TESTS = (ALERT_TESTS, *SLO_TESTS)
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
    "ServiceNotReporting",
}
# The SRE workbook's multi-window, multi-burn-rate table: long window -> (short window, burn
# rate, severity: critical pages, warning opens a ticket).
BURN_PAIRS = {
    "1h": ("5m", 14.4, "critical"),
    "6h": ("30m", 6.0, "critical"),
    "1d": ("2h", 3.0, "warning"),
    "3d": ("6h", 1.0, "warning"),
}
SLO_WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
SLOS = {
    "create-mandate-availability": 0.999,
    "create-mandate-latency": 0.99,
    "webhook-delivery": 0.995,
}
LOCAL_CONFIG = REPO / "config" / "prometheus.yml"
LOCAL_SERVICE_JOBS = {
    "mandate-vault-api": "127.0.0.1:8000",
    "mandate-vault-jwt-verifier": "127.0.0.1:8001",
    "mandate-vault-webhook-worker": "127.0.0.1:8002",
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
    """Alerting rules by name (recording rules: `recording_rules()`)."""
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for group in load(ALERTS)["groups"]:
        for rule in group["rules"]:
            if "record" in rule:
                assert group["name"] == "mandate_vault_slo_recording", group["name"]
                continue
            assert rule["alert"] not in found, f"duplicate alert {rule['alert']}"
            found[rule["alert"]] = (group["name"], rule)
    return found


def recording_rules() -> list[dict[str, Any]]:
    return [r for g in load(ALERTS)["groups"] for r in g["rules"] if "record" in r]


def normalize(expr: str) -> str:
    return " ".join(expr.split())


def test_promtool_check_config() -> None:
    result = run(promtool(), "check", "config", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_check_rules() -> None:
    result = run(promtool(), "check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", RULE_TESTS, ids=lambda p: p.name)
def test_promtool_test_rules(path: Path) -> None:
    result = run(promtool(), "test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_silent_unit_test() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for path in RULE_TESTS:
        for group in load(path)["tests"]:
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
    recorded = {r["record"] for r in recording_rules()}
    for name, rule in [
        *((n, r) for n, (_, r) in rules().items()),
        *((r["record"], r) for r in recording_rules()),
    ]:
        for metric in metric_names(rule["expr"]):
            assert metric in SERVICE_METRICS | recorded or metric.startswith("otelcol_"), (
                f"{name} uses unknown metric {metric}"
            )


def _number(expr: str) -> float:
    return float(expr.strip().removeprefix("vector(").removesuffix(")"))


def test_slo_recording_rules_cover_every_window() -> None:
    recorded: dict[str, set[str]] = {}
    objectives: dict[str, float] = {}
    for rule in recording_rules():
        slo = rule["labels"]["slo"]
        if rule["record"] == "slo:objective:ratio":
            objectives[slo] = _number(rule["expr"])
            continue
        window = rule["record"].removeprefix("slo:sli_error:ratio_rate")
        recorded.setdefault(slo, set()).add(window)
        assert f"[{window}]" in rule["expr"], f"{rule['record']} {slo} reads another window"
        assert re.sub(r"\[\w+\]", "", rule["expr"]) == re.sub(
            r"\[\w+\]",
            "",
            next(
                r["expr"]
                for r in recording_rules()
                if r["labels"]["slo"] == slo and r["record"].endswith("rate5m")
            ),
        ), f"{slo}: the windows differ in more than the range"
    assert objectives == SLOS
    assert recorded == {slo: set(SLO_WINDOWS) for slo in SLOS}


def test_slo_alerts_are_the_workbook_burn_rate_pairs() -> None:
    """Each SLO: four alerts, long AND short window above burn x (1 - objective)."""
    pairs = re.compile(
        r"^slo:sli_error:ratio_rate(\w+)\{slo=\"([\w-]+)\"\} > ([\d.]+)\s+"
        r"and slo:sli_error:ratio_rate(\w+)\{slo=\"([\w-]+)\"\} > ([\d.]+)$"
    )
    seen: set[tuple[str, str]] = set()
    for name, (group, rule) in rules().items():
        if group != "mandate_vault_slo_alerts":
            continue
        match = pairs.match(rule["expr"].strip())
        assert match, f"{name}: {rule['expr']}"
        long, slo, threshold, short, slo_again, threshold_again = match.groups()
        expected_short, burn, severity = BURN_PAIRS[long]
        assert (short, slo_again, threshold_again) == (expected_short, slo, threshold), name
        assert float(threshold) == pytest.approx(burn * (1 - SLOS[slo])), name
        labels = rule["labels"]
        assert labels["severity"] == severity, name
        assert (labels["long_window"], labels["short_window"]) == (long, short), name
        assert float(labels["burn_rate"]) == burn, name
        assert "for" not in rule, f"{name}: the short window is the debounce"
        seen.add((slo, long))
    assert seen == {(slo, long) for slo in SLOS for long in BURN_PAIRS}


def test_metric_name_extraction() -> None:
    assert metric_names(
        'histogram_quantile(0.95, sum by (le) (rate(a_bucket{x="y"}[5m]))) > 0.5'
    ) == {"a_bucket"}
    assert metric_names("sum(rate(b[5m])) by (endpoint) / on(job) c offset 5m") == {"b", "c"}


def test_scrape_jobs() -> None:
    """Compose: the collector's own metrics, Prometheus, Alertmanager. The services' metrics
    come by the collector's remote write; scraping them too would store every series twice."""
    config = load(CONFIG)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"otel-collector", "prometheus", "alertmanager"}
    collector = [t for sc in jobs["otel-collector"]["static_configs"] for t in sc["targets"]]
    assert collector == ["otel-collector:8888"]
    assert config["rule_files"] == ["alerts.yml"]
    managers = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert managers == ["alertmanager:9093"]
    assert "--web.enable-remote-write-receiver" in CONFIG.read_text(encoding="utf-8")


def test_local_config_scrapes_the_services_directly() -> None:
    """config/prometheus.yml: the guide's local setup and `make run` (127.0.0.1:8000-8002),
    with the same job names as the collector-fed series and the same rule file."""
    result = run(promtool(), "check", "config", str(LOCAL_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    config = load(LOCAL_CONFIG)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for job, target in LOCAL_SERVICE_JOBS.items():
        assert jobs[job]["metrics_path"] == "/api/v1/metrics", job
        assert [t for sc in jobs[job]["static_configs"] for t in sc["targets"]] == [target]
    assert config["rule_files"] == ["alerts.yml"]
    rules_file = LOCAL_CONFIG.parent / "alerts.yml"
    assert rules_file.is_symlink(), "config/alerts.yml is a link to the one alerts file"
    assert rules_file.resolve() == ALERTS.resolve()


@pytest.mark.parametrize("path", SLO_TESTS, ids=lambda p: p.name)
def test_slo_tests_evaluate_recordings_before_the_alerts(path: Path) -> None:
    """At a 1h step an alert reading the previous step's recording would see nothing (past the
    5m lookback), so the tests pin the order: every group of alerts.yml, recording first."""
    order = load(path)["group_eval_order"]
    groups = [g["name"] for g in load(ALERTS)["groups"]]
    assert sorted(order) == sorted(groups)
    assert order.index("mandate_vault_slo_recording") < order.index("mandate_vault_slo_alerts")
