"""Loki and promtail configs (no Loki or promtail binary here: structure only)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
LOKI = REPO / "deploy" / "loki" / "loki.yaml"
PROMTAIL = REPO / "deploy" / "promtail" / "promtail.yml"


def load(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    assert isinstance(data, dict)
    return data


def test_loki_schema_v13_on_tsdb() -> None:
    configs = load(LOKI)["schema_config"]["configs"]
    latest = max(configs, key=lambda c: str(c["from"]))
    assert latest["schema"] == "v13"
    assert latest["store"] == "tsdb"
    assert latest["object_store"] == "filesystem"


def test_loki_accepts_otlp_with_structured_metadata() -> None:
    config = load(LOKI)
    limits = config["limits_config"]
    assert limits["allow_structured_metadata"] is True
    promoted = [
        attribute
        for rule in limits["otlp_config"]["resource_attributes"]["attributes_config"]
        if rule["action"] == "index_label"
        for attribute in rule["attributes"]
    ]
    assert "service.name" in promoted
    assert not {"trace_id", "span_id"} & set(promoted), "per-request ids must not be labels"
    assert config["server"]["http_listen_port"] == 3100
    assert config["auth_enabled"] is False


def test_loki_retention_has_a_delete_store() -> None:
    compactor = load(LOKI)["compactor"]
    if compactor.get("retention_enabled"):
        assert compactor["delete_request_store"] == "filesystem"


def _scrape() -> dict[str, Any]:
    jobs = load(PROMTAIL)["scrape_configs"]
    assert len(jobs) == 1
    scrape = jobs[0]
    assert isinstance(scrape, dict)
    return scrape


def _stage(kind: str) -> dict[str, Any]:
    stages = [s[kind] for s in _scrape()["pipeline_stages"] if kind in s]
    assert len(stages) == 1, f"expected one {kind} stage"
    stage = stages[0]
    assert isinstance(stage, dict)
    return stage


def test_promtail_tails_the_guides_files_into_loki() -> None:
    config = load(PROMTAIL)
    assert config["clients"][0]["url"] == "http://loki:3100/loki/api/v1/push"
    labels = _scrape()["static_configs"][0]["labels"]
    assert labels["__path__"] == "/var/log/mandate-vault/*.log"
    assert labels["job"] == "mandate-vault"


def test_promtail_json_stage_extracts_event_level_trace_id() -> None:
    expressions = _stage("json")["expressions"]
    assert {"event", "level", "trace_id"} <= set(expressions)
    labels = _stage("labels")
    assert "level" in labels
    assert "trace_id" not in labels, "per-request ids must not be labels"
    assert "event" not in labels, "keep label cardinality bounded"
    assert "trace_id" in _stage("structured_metadata")
    assert _stage("timestamp")["source"] == "timestamp"


def test_promtail_json_stage_matches_a_service_log_line() -> None:
    """The expressions are top-level keys of the services' JSON lines (JMESPath identifiers)."""
    line = json.loads(
        '{"event": "http_request", "level": "info", "timestamp": "2025-10-01T12:00:00.000000Z",'
        ' "logger": "mandate_vault_api", "service": "mandate-vault-api",'
        ' "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7"}'
    )
    for name, expression in _stage("json")["expressions"].items():
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", expression), name
        assert expression in line, f"{expression} is not a field of the log line"
    assert _stage("labels")["service_name"] == "service"
    assert line["service"].startswith("mandate-vault"), (
        "dashboard selects service_name=~mandate-vault.*"
    )
