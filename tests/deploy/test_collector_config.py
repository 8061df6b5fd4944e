"""Structure of the OpenTelemetry Collector configs in deploy/ (no collector binary here).

The collector itself cannot run on this machine, so these tests check what it would reject or
mis-run: pipelines naming undefined components, defined components left unused, memory_limiter
not first, deprecated component names, endpoints bound to localhost inside a container, the
batch processor instead of exporter-side batching, literal secrets, redaction patterns that miss
the secrets they are for. The overlays are merged the way the collector merges several
--config files (maps merged key by key, lists and scalars replaced) and checked the same way.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
BASE = DEPLOY / "otel-collector.yaml"
COMPOSE = DEPLOY / "otel-collector.compose.yaml"
ELASTICSEARCH = DEPLOY / "otel-collector.elasticsearch.yaml"

KINDS = ("receivers", "processors", "exporters", "connectors", "extensions")
PIPELINE_KINDS = ("receivers", "processors", "exporters")

# Component types renamed or removed by 2026 (old names load with a deprecation warning, or
# not at all). Receiver `otlp` keeps its name, so deprecations are per kind.
DEPRECATED = {
    "receivers": set(),
    "processors": {"batch", "resourcedetection", "k8sattributes", "memorylimiter"},
    "exporters": {"otlp", "otlphttp", "loki", "logging", "prometheusremotewrite"},
    "connectors": {"spanmetrics"},
    "extensions": {"healthcheck"},
}
PUSH_EXPORTERS = {"otlp_http", "otlp_grpc", "elasticsearch"}
ENV_PLACEHOLDER = re.compile(r"^\$\{env:[A-Z][A-Z0-9_]*\}$")
SECRET_KEYS = re.compile(r"(?i)(password|passwd|x-sentry-auth|authorization|api_key|token|secret)$")

SECRETS = (
    "mvk_live_3f9a8b7c6d5e4f3a",
    "mvr_8c7b6a5d4e3f",
    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ0ZW5hbnQtMSJ9.c2lnbmF0dXJl",
    "alice.smith+billing@example.com",
    "Bearer abc.def-ghi",
)
HARMLESS = (
    "4bf92f3577b34da6a3ce929d0e0e4736",  # a trace id
    "did:web:bank.example.com",
    "/api/v1/mandates/{id}",
    "mandate.created",
    "550e8400-e29b-41d4-a716-446655440000",
)


def load(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    assert isinstance(data, dict), f"{path.name} is not a YAML mapping"
    return data


def merge(base: Any, overlay: Any) -> Any:
    """The collector's multi-file merge: maps merge recursively, anything else is replaced."""
    if isinstance(base, dict) and isinstance(overlay, dict):
        merged = copy.deepcopy(base)
        for key, value in overlay.items():
            merged[key] = merge(merged[key], value) if key in merged else copy.deepcopy(value)
        return merged
    return copy.deepcopy(overlay)


def component_type(component_id: str) -> str:
    return component_id.split("/", 1)[0]


def pipelines(config: dict[str, Any]) -> dict[str, dict[str, list[str]]]:
    result = config["service"]["pipelines"]
    assert isinstance(result, dict)
    assert result, "service.pipelines is empty"
    return result


def check_structure(config: dict[str, Any], allowed_unused: frozenset[str] = frozenset()) -> None:
    defined = {kind: set(config.get(kind) or {}) for kind in KINDS}
    used: dict[str, set[str]] = {kind: set() for kind in KINDS}
    connectors = defined["connectors"]
    for name, pipeline in pipelines(config).items():
        assert pipeline.get("receivers"), f"pipeline {name} has no receivers"
        assert pipeline.get("exporters"), f"pipeline {name} has no exporters"
        for kind in PIPELINE_KINDS:
            for component in pipeline.get(kind) or []:
                is_connector = kind != "processors" and component in connectors
                target = "connectors" if is_connector else kind
                assert component in defined[target], (
                    f"pipeline {name} uses {kind[:-1]} {component!r}, which is not defined"
                )
                used[target].add(component)
    used["extensions"] = set(config["service"].get("extensions") or [])
    for extension in used["extensions"]:
        assert extension in defined["extensions"], f"extension {extension!r} is not defined"
    for kind in KINDS:
        unused = defined[kind] - used[kind] - allowed_unused
        assert not unused, f"{kind} defined but never used: {sorted(unused)}"


def check_memory_limiter_first(config: dict[str, Any]) -> None:
    for name, pipeline in pipelines(config).items():
        processors = pipeline.get("processors") or []
        assert processors, f"pipeline {name} has no processors (memory_limiter is required)"
        assert component_type(processors[0]) == "memory_limiter", (
            f"pipeline {name} starts with {processors[0]!r}, not memory_limiter"
        )


def merged_compose() -> dict[str, Any]:
    return merge(load(BASE), load(COMPOSE))


def merged_elasticsearch() -> dict[str, Any]:
    return merge(load(BASE), load(ELASTICSEARCH))


def merged_compose_elasticsearch() -> dict[str, Any]:
    return merge(merge(load(BASE), load(COMPOSE)), load(ELASTICSEARCH))


VARIANTS = {
    "base": (lambda: load(BASE), frozenset()),
    "compose": (merged_compose, frozenset({"k8s_attributes"})),
    "elasticsearch": (merged_elasticsearch, frozenset()),
    "compose+elasticsearch": (merged_compose_elasticsearch, frozenset({"k8s_attributes"})),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_pipelines_reference_defined_components_and_use_every_one(variant: str) -> None:
    build, allowed_unused = VARIANTS[variant]
    check_structure(build(), allowed_unused)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_memory_limiter_is_first_in_every_pipeline(variant: str) -> None:
    check_memory_limiter_first(VARIANTS[variant][0]())


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_no_deprecated_component_names(variant: str) -> None:
    config = VARIANTS[variant][0]()
    for kind, names in DEPRECATED.items():
        for component in config.get(kind) or {}:
            assert component_type(component) not in names, f"deprecated {kind[:-1]} {component!r}"
    processors = {component_type(c) for c in config.get("processors") or {}}
    assert "batch" not in processors, "batch via exporters' sending_queue.batch, not a processor"


def test_expected_components_present() -> None:
    config = load(BASE)
    assert "otlp" in config["receivers"]
    assert {"memory_limiter", "resource_detection", "k8s_attributes", "redaction"} <= set(
        config["processors"]
    )
    assert config["processors"]["resource_detection"]["detectors"] == ["env", "system"]
    exporters = config["exporters"]
    assert exporters["otlp_http/loki"]["endpoint"] == "http://loki:3100/otlp"
    assert exporters["otlp_http/sentry_traces"]["traces_endpoint"].startswith("${env:")
    assert exporters["otlp_http/sentry_logs"]["logs_endpoint"].startswith("${env:")
    assert "prometheus" not in exporters, "metrics are remote-written, not pulled (replicas)"
    flows = {name: set(p["exporters"]) for name, p in pipelines(config).items()}
    assert flows["traces"] == {"otlp_http/sentry_traces"}
    assert flows["metrics"] == {"prometheus_remote_write"}
    assert flows["logs"] == {"otlp_http/loki", "otlp_http/sentry_logs"}


def test_endpoints_bind_all_interfaces() -> None:
    config = load(BASE)
    protocols = config["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"] == "0.0.0.0:4317"
    assert protocols["http"]["endpoint"] == "0.0.0.0:4318"
    assert config["extensions"]["health_check"]["endpoint"] == "0.0.0.0:13133"
    readers = config["service"]["telemetry"]["metrics"]["readers"]
    pulls = [r["pull"]["exporter"]["prometheus"] for r in readers if "pull" in r]
    assert {"host": "0.0.0.0", "port": 8888} in pulls, "self metrics must be pulled on 0.0.0.0:8888"
    assert "address" not in config["service"]["telemetry"]["metrics"], "`address` is ignored"


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_push_exporters_batch_in_their_sending_queue(variant: str) -> None:
    config = VARIANTS[variant][0]()
    for name, settings in config["exporters"].items():
        if component_type(name) in PUSH_EXPORTERS:
            queue = settings.get("sending_queue") or {}
            assert isinstance(queue.get("batch"), dict), f"{name}: sending_queue.batch missing"


def _walk(node: Any, path: str = "") -> list[tuple[str, str, Any]]:
    found: list[tuple[str, str, Any]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            found.append((f"{path}.{key}", str(key), value))
            found.extend(_walk(value, f"{path}.{key}"))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found.extend(_walk(value, f"{path}[{index}]"))
    return found


@pytest.mark.parametrize("path", [BASE, COMPOSE, ELASTICSEARCH], ids=lambda p: p.name)
def test_secrets_only_from_environment(path: Path) -> None:
    config = load(path)
    for where, key, value in _walk(config):
        if isinstance(value, str) and SECRET_KEYS.search(key):
            assert ENV_PLACEHOLDER.match(value), f"{where} must come from ${{env:...}}"
    text = path.read_text(encoding="utf-8")
    assert "sentry_key=" not in text.replace("sentry_key=<public key>", ""), "literal Sentry key"
    for exporter, settings in config.get("exporters", {}).items():
        if "sentry" in exporter:
            for field in ("traces_endpoint", "logs_endpoint"):
                if field in settings:
                    assert ENV_PLACEHOLDER.match(settings[field]), f"{exporter}.{field}"


def _ottl_strings(statement: str) -> list[str]:
    """String literals of an OTTL statement, unescaped (\\\\ -> \\, \\" -> ")."""
    literals = re.findall(r'"((?:[^"\\]|\\.)*)"', statement)
    return [re.sub(r"\\(.)", r"\1", literal) for literal in literals]


def _redaction_patterns(config: dict[str, Any]) -> list[re.Pattern[str]]:
    return [re.compile(p) for p in config["processors"]["redaction"]["blocked_values"]]


def _transform_patterns(config: dict[str, Any]) -> list[re.Pattern[str]]:
    transform = config["processors"]["transform/scrub"]
    patterns = []
    for group in transform.get("trace_statements", []) + transform.get("log_statements", []):
        for statement in group["statements"]:
            literals = _ottl_strings(statement)
            if statement.startswith("replace_all_patterns("):
                patterns.append(re.compile(literals[1]))  # after the "value" mode
            elif statement.startswith("replace_pattern("):
                patterns.append(re.compile(literals[0]))
    assert patterns, "transform/scrub has no replace statements"
    return patterns


def test_redaction_masks_secret_values_and_keeps_ordinary_ones() -> None:
    config = load(BASE)
    patterns = _redaction_patterns(config)
    for secret in SECRETS:
        assert any(p.search(f"failed with {secret} here") for p in patterns), secret
    for value in HARMLESS:
        assert not any(p.search(value) for p in patterns), f"would mask {value!r}"
    assert config["processors"]["redaction"]["allow_all_keys"] is True
    keys = [re.compile(p) for p in config["processors"]["redaction"]["blocked_key_patterns"]]
    for key in ("password", "http.request.header.authorization", "api_key", "x-api-key", "token"):
        assert any(p.search(key) for p in keys), key
    for key in ("tenant_id", "service.name", "http.route", "mandate_vault.event_type"):
        assert not any(p.search(key) for p in keys), f"would mask key {key!r}"


def test_transform_scrubs_span_events_and_log_bodies() -> None:
    config = load(BASE)
    transform = config["processors"]["transform/scrub"]
    contexts = {g["context"] for g in transform["trace_statements"] + transform["log_statements"]}
    assert {"spanevent", "log"} <= contexts
    for pattern in _transform_patterns(config):
        for secret in SECRETS:
            assert pattern.search(f"x {secret} y"), f"{pattern.pattern} misses {secret}"
        for value in HARMLESS:
            assert not pattern.search(value), f"{pattern.pattern} would mask {value!r}"


def test_redaction_runs_in_every_pipeline_before_export() -> None:
    for variant, (build, _) in VARIANTS.items():
        for name, pipeline in pipelines(build()).items():
            assert "redaction" in pipeline["processors"], f"{variant}: {name} lacks redaction"


def test_compose_overlay_only_drops_k8s_attributes() -> None:
    base, compose = load(BASE), merged_compose()
    for name, pipeline in pipelines(compose).items():
        expected = [p for p in pipelines(base)[name]["processors"] if p != "k8s_attributes"]
        assert pipeline["processors"] == expected, name
        assert pipeline["exporters"] == pipelines(base)[name]["exporters"], name


def test_elasticsearch_overlay_restates_the_logs_exporters() -> None:
    base, merged = load(BASE), merged_elasticsearch()
    logs = pipelines(merged)["logs"]["exporters"]
    assert "elasticsearch" in logs
    assert set(pipelines(base)["logs"]["exporters"]) <= set(logs), (
        "lists are replaced on merge: the overlay must restate Loki and Sentry"
    )
    settings = merged["exporters"]["elasticsearch"]
    assert settings["logs_index"] == "mandate-vault"
    assert ENV_PLACEHOLDER.match(settings["endpoint"])
    for name in ("traces", "metrics"):
        assert pipelines(merged)[name] == pipelines(base)[name]


def _pinned_version() -> str:
    text = BASE.read_text(encoding="utf-8")
    comment = re.search(r"otelcol-contrib (\d+\.\d+\.\d+)", text)
    image = re.search(r"otel/opentelemetry-collector-contrib:(\d+\.\d+\.\d+)", text)
    assert comment, "pin the otelcol-contrib version in the header comment"
    assert image, "name the otel/opentelemetry-collector-contrib image tag in the header"
    assert comment.group(1) == image.group(1)
    return comment.group(1)


def test_collector_version_pinned_and_consistent_with_deployments() -> None:
    version = _pinned_version()
    ours = {BASE, COMPOSE, ELASTICSEARCH}
    candidates = [
        *REPO.glob("deploy/**/*.y*ml"),
        *REPO.glob("*compose*.y*ml"),
        *REPO.glob("deploy/**/Dockerfile*"),
    ]
    for path in candidates:
        if path in ours or not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for tag in re.findall(r"otel/opentelemetry-collector-contrib:([\w.\-]+)", text):
            assert tag == version, f"{path.relative_to(REPO)} uses {tag}, config is for {version}"


def test_metrics_reach_prometheus_by_remote_write_with_the_direct_scrape_job_names() -> None:
    """job = service.name (service.namespace removed for metrics only), resource attributes in
    target_info, suffixes on: the series are named and labelled like the direct scrape."""
    for variant, (build, _) in VARIANTS.items():
        config = build()
        exporter = config["exporters"]["prometheus_remote_write"]
        assert exporter["endpoint"] == "http://prometheus:9090/api/v1/write", variant
        assert exporter["add_metric_suffixes"] is True
        assert exporter["resource_to_telemetry_conversion"]["enabled"] is False
        assert exporter["remote_write_queue"]["enabled"] is True
        metrics = pipelines(config)["metrics"]["processors"]
        assert metrics[-1] == "transform/prometheus_job", variant
        for name in ("traces", "logs"):
            assert "transform/prometheus_job" not in pipelines(config)[name]["processors"]
    (group,) = load(BASE)["processors"]["transform/prometheus_job"]["metric_statements"]
    assert group["context"] == "resource"
    assert group["statements"] == ['delete_key(attributes, "service.namespace")']
