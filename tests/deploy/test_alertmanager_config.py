"""Alertmanager config: amtool accepts it, routes follow the guide, no secret is committed.

amtool comes from the Debian package prometheus-alertmanager, which `make setup` installs; a
missing amtool fails these tests instead of skipping them.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "deploy" / "alertmanager" / "alertmanager.yml"
SECRETS_DIR = "/etc/alertmanager/secrets/"

# Real-looking credentials that must never be committed anywhere under deploy/ or config/.
LEAKS = {
    "Slack webhook": re.compile(r"hooks\.slack\.com/services/T[A-Z0-9]+/B[A-Z0-9]+/\w+"),
    "Slack token": re.compile(r"xox[abprs]-[A-Za-z0-9-]{10,}"),
    "Sentry DSN": re.compile(r"https://[0-9a-f]{32}@[\w.-]*sentry\.io"),
    "Sentry key": re.compile(r"sentry_key=[0-9a-f]{32}"),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
}


def amtool() -> str:
    path = shutil.which("amtool")
    if path is None:
        pytest.fail("amtool is not installed: `make setup` installs prometheus-alertmanager")
    return path


def load() -> dict[str, Any]:
    with CONFIG.open(encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    assert isinstance(data, dict)
    return data


def route(*labels: str) -> str:
    result = subprocess.run(
        [amtool(), "config", "routes", "test", f"--config.file={CONFIG}", *labels],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()


def test_amtool_check_config() -> None:
    result = subprocess.run(
        [amtool(), "check-config", str(CONFIG)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (("severity=critical",), "pagerduty"),
        (("severity=critical", "alertname=HighErrorRate", "team=backend"), "pagerduty"),
        (("severity=warning",), "slack"),
        (("severity=warning", "alertname=HighAuthFailureRate", "team=security"), "slack"),
        (("severity=info",), "default"),
        (("alertname=Watchdog",), "default"),
    ],
)
def test_routes(labels: tuple[str, ...], receiver: str) -> None:
    assert route(*labels) == receiver


def test_guide_grouping_and_timers() -> None:
    top = load()["route"]
    assert top["receiver"] == "default"
    assert top["group_by"] == ["alertname", "severity"]
    assert (top["group_wait"], top["group_interval"], top["repeat_interval"]) == (
        "10s",
        "10s",
        "12h",
    )
    receivers = {r["name"]: r for r in load()["receivers"]}
    assert set(receivers) == {"default", "slack", "pagerduty"}
    assert receivers["slack"]["slack_configs"][0]["channel"] == "#alerts"


def test_credentials_come_from_mounted_files() -> None:
    config = load()
    text = CONFIG.read_text(encoding="utf-8")
    for literal in ("slack_api_url:", "api_url:", "service_key:", "routing_key:", "auth_password:"):
        assert not re.search(rf"^\s*(?:smtp_)?{literal}", text, re.MULTILINE), literal
    assert config["global"]["slack_api_url_file"].startswith(SECRETS_DIR)
    assert config["global"]["smtp_auth_password_file"].startswith(SECRETS_DIR)
    pagerduty = next(r for r in config["receivers"] if r["name"] == "pagerduty")
    assert pagerduty["pagerduty_configs"][0]["routing_key_file"].startswith(SECRETS_DIR)


def test_no_real_secrets_committed() -> None:
    roots = [REPO / "deploy", REPO / "config", REPO / "docs"]
    files = [p for root in roots if root.exists() for p in root.rglob("*") if p.is_file()]
    assert files
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        for kind, pattern in LEAKS.items():
            assert not pattern.search(text), f"{kind} in {path.relative_to(REPO)}"


def slo_alerts() -> list[dict[str, Any]]:
    rules = REPO / "deploy" / "prometheus" / "alerts.yml"
    groups = yaml.safe_load(rules.read_text(encoding="utf-8"))["groups"]
    return [r for g in groups for r in g["rules"] if "burn_rate" in r.get("labels", {})]


def test_slo_pages_go_to_pagerduty_and_tickets_to_slack() -> None:
    """The SLO alerts' own labels (plus the slo label their series carry) route as the guide
    routes severities: 1h and 6h pairs page, 1d and 3d pairs open a ticket."""
    alerts = slo_alerts()
    assert len(alerts) == 12
    expected = {"1h": "pagerduty", "6h": "pagerduty", "1d": "slack", "3d": "slack"}
    for alert in alerts:
        labels = {**alert["labels"], "alertname": alert["alert"], "slo": "create-mandate-latency"}
        assert route(*(f"{k}={v}" for k, v in labels.items())) == expected[labels["long_window"]], (
            alert["alert"]
        )


def test_a_page_silences_the_ticket_of_the_same_slo() -> None:
    rules = load()["inhibit_rules"]
    (slo,) = [r for r in rules if r["equal"] == ["slo"]]
    assert 'severity="critical"' in slo["source_matchers"]
    assert 'severity="warning"' in slo["target_matchers"]
    assert all(
        any(m.startswith("slo=") for m in slo[k]) for k in ("source_matchers", "target_matchers")
    )
