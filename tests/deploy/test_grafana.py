"""Grafana provisioning and the Mandate Vault dashboard (no Grafana binary here).

Checks the data-source uids the dashboard relies on, the guide's eight panels with the guide's
queries, the logs panel, SLO thresholds and the deployment annotation; every PromQL target is
parsed by promtool (as a recording rule) and may only use the services' metric names.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from mandate_vault_shared.telemetry import names

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "deploy" / "grafana"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "datasources.yml"
PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "dashboards.yml"
DASHBOARD = GRAFANA / "dashboards" / "mandate-vault.json"
GUIDE_PATH = REPO / "config" / "grafana-dashboard.json"
LOGS_QUERY = '{service_name=~"mandate-vault.*"}'

# The guide's eight panels and their queries.
GUIDE_PANELS = {
    "Request Rate": ["sum(rate(http_requests_total[5m])) by (endpoint, method)"],
    "Error Rate": ['sum(rate(http_requests_total{status_code=~"5.."}[5m]))'],
    "Response Time (P50, P95, P99)": [
        "histogram_quantile(0.50, rate(http_request_duration_seconds_bucket[5m]))",
        "histogram_quantile(0.95, rate(http_request_duration_seconds_bucket[5m]))",
        "histogram_quantile(0.99, rate(http_request_duration_seconds_bucket[5m]))",
    ],
    "JWT Verification Status": ["sum(rate(jwt_verifications_total[5m])) by (status)"],
    "Active Mandates": ["sum(mandates_active) by (tenant_id)"],
    "Webhook Success Rate": [
        'sum(rate(webhook_deliveries_total{status="success"}[5m])) / '
        "sum(rate(webhook_deliveries_total[5m]))"
    ],
    "Database Connections": ["db_connections_active"],
    "Authentication Failures": ['sum(rate(auth_attempts_total{result="failed"}[5m]))'],
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
    "WEBHOOK_REDELIVERIES_TOTAL",
    "WEBHOOK_ENDPOINTS_DISABLED_TOTAL",
    "WEBHOOK_EVENTS_RECONCILED_TOTAL",
    "KAFKA_CONSUMER_REBUILDS_TOTAL",
    "OUTBOX_BACKLOG",
    "OUTBOX_OLDEST_AGE",
    "AUTH_ATTEMPTS_TOTAL",
    "ACTIVE_USERS",
    "RATE_LIMITED_TOTAL",
    "DB_CONNECTIONS_ACTIVE",
    "DB_QUERY_DURATION",
    # admission control (shared/web/admission.py)
    "REQUESTS_SHED_TOTAL",
    "ADMISSION_CONCURRENCY_LIMIT",
    "ADMISSION_IN_FLIGHT",
    "ADMISSION_QUEUED",
)
_HISTOGRAMS = ("HTTP_REQUEST_DURATION", "WEBHOOK_DELIVERY_DURATION", "DB_QUERY_DURATION")
RECONCILIATION_METRICS = {
    names.WEBHOOK_EVENTS_RECONCILED_TOTAL,
    names.KAFKA_CONSUMER_REBUILDS_TOTAL,
}
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"
RECORDED = {
    rule["record"]
    for group in yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]
    for rule in group["rules"]
    if "record" in rule
}
ALLOWED_METRICS = (
    {getattr(names, c) for c in _CONTRACT}
    | {getattr(names, h) + s for h in _HISTOGRAMS for s in ("_bucket", "_sum", "_count")}
    | {"up"}
    | RECORDED
)
# Panels beyond the guide's: what each must show (a metric its targets read).
PIPELINE_PANELS = {
    "Outbox backlog and age": {"outbox_backlog", "outbox_oldest_unpublished_age_seconds"},
    "Webhook consumer lag": {"webhook_consumer_lag"},
    "Webhook dead letters": {"webhook_dead_letters_total"},
    "Reconciliation and consumer rebuilds": RECONCILIATION_METRICS,
    "Webhook Circuit Breakers": {
        "webhook_circuit_breakers_open",
        "webhook_circuit_breaker_transitions_total",
    },
    "Load shedding (refused 503s)": {"requests_shed_total"},
    "Telemetry dropped": {"telemetry_dropped_total"},
    "SLO burn rate: page windows (1h, 6h)": {
        "slo:sli_error:ratio_rate1h",
        "slo:sli_error:ratio_rate6h",
        "slo:objective:ratio",
    },
    "SLO burn rate: ticket windows (1d, 3d)": {
        "slo:sli_error:ratio_rate1d",
        "slo:sli_error:ratio_rate3d",
        "slo:objective:ratio",
    },
}

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


def normalize(expr: str) -> str:
    return " ".join(expr.split())


def load_yaml(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    assert isinstance(data, dict)
    return data


def dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def panels() -> list[dict[str, Any]]:
    found = []
    for panel in dashboard()["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))  # collapsed rows
    return found


def prometheus_exprs() -> list[str]:
    exprs = [
        target["expr"]
        for panel in panels()
        for target in panel.get("targets", [])
        if (target.get("datasource") or panel["datasource"])["uid"] == "prometheus"
    ]
    exprs += [
        annotation["expr"]
        for annotation in dashboard()["annotations"]["list"]
        if annotation.get("datasource", {}).get("uid") == "prometheus"
    ]
    assert exprs
    return exprs


def test_datasources_have_fixed_uids() -> None:
    sources = {s["uid"]: s for s in load_yaml(DATASOURCES)["datasources"]}
    assert sources["prometheus"]["type"] == "prometheus"
    assert sources["prometheus"]["url"] == "http://prometheus:9090"
    assert sources["loki"]["type"] == "loki"
    assert sources["loki"]["url"] == "http://loki:3100"


def test_loki_links_trace_ids() -> None:
    loki = next(s for s in load_yaml(DATASOURCES)["datasources"] if s["uid"] == "loki")
    fields = loki["jsonData"]["derivedFields"]
    assert any(f.get("matcherType") == "label" and f["matcherRegex"] == "trace_id" for f in fields)
    assert any(f.get("datasourceUid") == "loki" for f in fields), "no link to the trace's logs"
    for field in fields:
        # $$ keeps Grafana's provisioning from expanding ${__value.raw} as an env variable.
        assert "$${__value.raw}" in field["url"], field["name"]
    json_field = next(f for f in fields if f.get("matcherType", "regex") == "regex")
    sample = '{"event": "x", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"}'
    match = re.search(json_field["matcherRegex"], sample)
    assert match
    assert match.group(1) == "4bf92f3577b34da6a3ce929d0e0e4736"


def test_dashboard_provider_points_at_mounted_directory() -> None:
    provider = load_yaml(PROVIDERS)["providers"][0]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


def test_guide_panels_with_guide_queries() -> None:
    by_title = {panel["title"]: panel for panel in panels()}
    for title, queries in GUIDE_PANELS.items():
        assert title in by_title, f"guide panel {title!r} missing"
        exprs = [normalize(t["expr"]) for t in by_title[title]["targets"]]
        for query in queries:
            assert normalize(query) in exprs, f"{title}: {query} missing"


def test_logs_panel() -> None:
    logs = [panel for panel in panels() if panel["type"] == "logs"]
    assert len(logs) == 1
    assert logs[0]["datasource"]["uid"] == "loki"
    assert [t["expr"] for t in logs[0]["targets"]] == [LOGS_QUERY]


def test_every_panel_uses_a_provisioned_datasource() -> None:
    for panel in panels():
        assert panel["datasource"]["uid"] in {"prometheus", "loki"}, panel["title"]
        for target in panel.get("targets", []):
            assert target.get("datasource", panel["datasource"]) == panel["datasource"]


def _threshold_values(panel: dict[str, Any]) -> set[float]:
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    return {step["value"] for step in steps if step["value"] is not None}


def test_slo_thresholds() -> None:
    by_title = {panel["title"]: panel for panel in panels()}
    latency = next(p for t, p in by_title.items() if t.startswith("SLO: p95"))
    errors = next(p for t, p in by_title.items() if t.startswith("SLO: error ratio"))
    assert 0.5 in _threshold_values(latency)
    assert 0.01 in _threshold_values(errors)
    assert 0.5 in _threshold_values(by_title["Response Time (P50, P95, P99)"])
    assert "http_request_duration_seconds_bucket" in latency["targets"][0]["expr"]
    assert 'status_code=~"5.."' in errors["targets"][0]["expr"]


def test_deployment_annotation() -> None:
    annotations = dashboard()["annotations"]["list"]
    deploys = [a for a in annotations if "mandate_vault_app_info" in a.get("expr", "")]
    assert len(deploys) == 1
    assert deploys[0]["enable"] is True
    assert deploys[0]["datasource"]["uid"] == "prometheus"


def test_prometheus_targets_use_only_service_metrics() -> None:
    for expr in prometheus_exprs():
        unknown = metric_names(expr) - ALLOWED_METRICS
        assert not unknown, f"{expr!r} uses {sorted(unknown)}"


def test_prometheus_targets_parse(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail(
            "promtool is not installed: `make setup` installs the Debian package prometheus"
        )
    rules = [
        {"record": f"dashboard:target_{index}", "expr": expr}
        for index, expr in enumerate(prometheus_exprs())
    ]
    path = tmp_path / "dashboard-targets.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_guide_path_is_a_relative_symlink_to_the_dashboard() -> None:
    assert GUIDE_PATH.is_symlink()
    target = os.readlink(GUIDE_PATH)
    assert not os.path.isabs(target), target
    assert GUIDE_PATH.resolve() == DASHBOARD.resolve()
    assert json.loads(GUIDE_PATH.read_text(encoding="utf-8"))["uid"] == dashboard()["uid"]


def test_pipeline_slo_and_telemetry_panels() -> None:
    by_title = {panel["title"]: panel for panel in panels()}
    for title, metrics in PIPELINE_PANELS.items():
        assert title in by_title, f"panel {title!r} missing"
        used = {m for target in by_title[title]["targets"] for m in metric_names(target["expr"])}
        assert metrics <= used, f"{title}: {sorted(metrics - used)} not shown"


def test_panels_have_unique_ids_and_do_not_overlap() -> None:
    ids = [panel["id"] for panel in panels()]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    cells: set[tuple[int, int]] = set()
    for panel in panels():
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        mine = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine
