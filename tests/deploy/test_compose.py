"""The compose stack and the service images, checked without a Docker daemon.

No image can be pulled or built here, so: docker-compose 1.29 (Debian's package, which
`make setup` installs; a missing binary fails these tests) validates
deploy/compose/docker-compose.yml and prints the configuration it would run, which the
structural tests read; the Dockerfiles are parsed as text and compared with the workspace
(package names, modules, ports, scripts); the services' settings classes are built from the
environment compose would give them; the webhook sink runs for real.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.fernet import Fernet
from pydantic import BaseModel
from pydantic_settings import BaseSettings

from mandate_vault_api.settings import DEV_SIGNING_KEY, ApiSettings
from mandate_vault_shared.webhooks import DEV_ENCRYPTION_KEY
from mandate_vault_verifier.settings import VerifierSettings
from mandate_vault_worker.settings import WorkerSettings

REPO = Path(__file__).resolve().parents[2]
COMPOSE_DIR = REPO / "deploy" / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
SINK = COMPOSE_DIR / "webhook-sink" / "sink.py"
COLLECTOR_IMAGE = "otel/opentelemetry-collector-contrib:0.163.2"
OTLP_ENDPOINT = "http://otel-collector:4318"


@dataclass(frozen=True)
class App:
    directory: str  # under services/
    module: str
    prefix: str
    settings: type[BaseSettings]

    @property
    def build_args(self) -> dict[str, str]:
        """What picks this service in the one Dockerfile (compose passes the same)."""
        return {
            "PACKAGE": self.distribution,
            "SOURCE": f"services/{self.directory}",
            "MODULE": self.module,
            "ENV_PREFIX": self.prefix,
            "PORT": str(self.port),
        }

    @property
    def pyproject(self) -> dict[str, Any]:
        path = REPO / "services" / self.directory / "pyproject.toml"
        return tomllib.loads(path.read_text(encoding="utf-8"))

    @property
    def distribution(self) -> str:
        return str(self.pyproject["project"]["name"])

    @property
    def port(self) -> int:
        return int(self.settings.model_fields["port"].default)


APPS = {
    "api": App("api", "mandate_vault_api", "API", ApiSettings),
    "jwt-verifier": App("jwt-verifier", "mandate_vault_verifier", "VERIFIER", VerifierSettings),
    "webhook-worker": App("webhook-worker", "mandate_vault_worker", "WORKER", WorkerSettings),
}
ONE_SHOT = {"migrate", "kafka-init"}
# Images without a shell or an HTTP client: nothing can run inside them as a healthcheck.
NO_HEALTHCHECK = {"otel-collector"}
SHARED_VARIABLES = {
    "ENVIRONMENT",
    "LOG_LEVEL",
    "LOG_FORMAT",
    "LOG_SAMPLE_RATE",
    "SENTRY_DSN",
    "SENTRY_TRACES_SAMPLE_RATE",
    "TELEMETRY_ENABLED",
}
# Ports the non-Python services listen on (the app services' come from their settings).
LISTEN_PORTS = {
    "otel-collector": {4317, 4318, 8888, 13133},
    "alertmanager": {9093},
    "prometheus": {9090},
    "loki": {3100},
    "grafana": {3000},
    "postgres": {5432},
    "kafka": {9092},
    "redis": {6379},
    "webhook-sink": {8080},
}


def docker_compose() -> str:
    path = shutil.which("docker-compose")
    if path is None:
        pytest.fail(
            "docker-compose is not installed: `make setup` installs Debian's docker-compose "
            "(1.29), which validates compose files without a Docker daemon"
        )
    return path


def run_compose(*args: str, env_file: Path) -> subprocess.CompletedProcess[str]:
    # Only the committed defaults: no deploy/compose/.env, no interpolation from this shell.
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    interpolated = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", text))
    env = {k: v for k, v in os.environ.items() if k not in interpolated}
    return subprocess.run(
        [docker_compose(), "--env-file", str(env_file), "-f", str(COMPOSE_FILE), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


@pytest.fixture(scope="module")
def empty_env_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("compose") / "empty.env"
    path.write_text("", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def resolved(empty_env_file: Path) -> dict[str, Any]:
    """The configuration docker-compose would run (anchors merged, paths made absolute)."""
    result = run_compose("config", env_file=empty_env_file)
    assert result.returncode == 0, result.stderr
    data = yaml.safe_load(result.stdout)
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(resolved: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(resolved["services"])


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    assert isinstance(env, dict), "use the mapping form of environment"
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def host_port(url: str) -> tuple[str, int]:
    match = re.match(r"^[a-z+]+://(?:[^@/]*@)?([^:/]+):(\d+)", url)
    assert match, url
    return match.group(1), int(match.group(2))


# --- the file itself ------------------------------------------------------------------------


def test_docker_compose_config_validates(empty_env_file: Path) -> None:
    result = run_compose("config", "-q", env_file=empty_env_file)
    assert result.returncode == 0, f"docker-compose config -q failed:\n{result.stderr}"


def test_top_level_keys_accepted_by_compose_v1_and_v2() -> None:
    raw = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    keys = {k for k in raw if not k.startswith("x-")}
    assert keys <= {"services", "volumes", "secrets", "networks"}, keys


def test_the_whole_stack_is_there(services: dict[str, dict[str, Any]]) -> None:
    expected = {*APPS, *ONE_SHOT, *LISTEN_PORTS}
    assert set(services) == expected


# --- images -----------------------------------------------------------------------------------


def test_app_services_are_built_from_the_one_dockerfile(
    services: dict[str, dict[str, Any]],
) -> None:
    defaults, _ = parse_dockerfile(DOCKERFILE)
    for name, app in APPS.items():
        build = services[name].get("build")
        assert build, f"{name} must be built, not pulled"
        assert Path(build["context"]).resolve() == REPO, f"{name}: build from the repository root"
        assert (REPO / build["dockerfile"]).resolve() == DOCKERFILE, name
        given = {k: str(v) for k, v in (build.get("args") or {}).items()}
        assert defaults | given | app.build_args == defaults | given, f"{name}: wrong build args"
    migrate = services["migrate"]
    assert migrate["build"] == services["api"]["build"], "migrate runs the api image"
    assert migrate["image"] == services["api"]["image"]


def test_every_image_is_pinned(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        image = service.get("image")
        assert image, f"{name} has no image name"
        repository, _, tag = image.rpartition(":")
        assert repository, f"{name}: {image} has no tag"
        assert "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest", f"{name}: {image}"
    assert services["otel-collector"]["image"] == COLLECTOR_IMAGE
    assert services["kafka"]["image"].startswith("apache/kafka:")


# --- health and start order ------------------------------------------------------------------


def test_every_long_running_service_has_a_healthcheck(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in services.items():
        if name in ONE_SHOT | NO_HEALTHCHECK:
            assert "healthcheck" not in service, name
            continue
        check = service.get("healthcheck")
        assert check, f"{name} has no healthcheck"
        assert check.get("test"), f"{name} has no healthcheck command"
        assert not check.get("disable"), name
        command = " ".join(check["test"])
        if name in APPS or name == "webhook-sink":
            # python:3.11-slim has no curl or wget: the interpreter does the request.
            assert check["test"][:2] == ["CMD", "python"], f"{name}: {command}"
            assert "curl" not in command
            assert "wget" not in command


def test_app_healthchecks_ask_readiness_on_their_port(services: dict[str, dict[str, Any]]) -> None:
    for name, app in APPS.items():
        command = " ".join(services[name]["healthcheck"]["test"])
        assert f"http://127.0.0.1:{app.port}/readyz" in command, name


def test_one_shot_services(services: dict[str, dict[str, Any]]) -> None:
    migrate = services["migrate"]
    assert migrate["command"] == ["mandate-vault", "migrate"]
    assert migrate["restart"] == "no"
    init = services["kafka-init"]
    assert init["restart"] == "no"
    script = " ".join(init["command"])
    assert "kafka-topics.sh" in script
    assert "--create" in script
    assert "--if-not-exists" in script
    assert "webhook-jobs" in script


def conditions(service: dict[str, Any]) -> dict[str, str]:
    depends = service.get("depends_on") or {}
    assert isinstance(depends, dict), "depends_on needs conditions"
    return {name: spec["condition"] for name, spec in depends.items()}


def test_dependencies_wait_for_the_right_condition(services: dict[str, dict[str, Any]]) -> None:
    """A one-shot must have completed, a service with a healthcheck be healthy."""
    for name, service in services.items():
        for dependency, condition in conditions(service).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            if dependency in ONE_SHOT:
                expected = "service_completed_successfully"
            elif "healthcheck" in services[dependency]:
                expected = "service_healthy"
            else:
                expected = "service_started"
            assert condition == expected, f"{name} -> {dependency}: {condition}"


@pytest.mark.parametrize(
    ("service", "required"),
    [
        (
            "api",
            {
                "migrate",
                "postgres",
                "kafka",
                "kafka-init",
                "jwt-verifier",
                "otel-collector",
                "redis",
            },
        ),
        ("webhook-worker", {"migrate", "postgres", "kafka", "kafka-init", "otel-collector"}),
        ("jwt-verifier", {"otel-collector"}),
        ("migrate", {"postgres"}),
        ("kafka-init", {"kafka"}),
        ("otel-collector", {"loki"}),
        ("prometheus", {"alertmanager"}),
        ("grafana", {"prometheus", "loki"}),
    ],
)
def test_start_order(services: dict[str, dict[str, Any]], service: str, required: set[str]) -> None:
    missing = required - set(conditions(services[service]))
    assert not missing, f"{service} does not wait for {sorted(missing)}"


def test_no_dependency_cycle(services: dict[str, dict[str, Any]]) -> None:
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, " -> ".join((*path, name))
        if name in done:
            return
        for dependency in conditions(services[name]):
            visit(dependency, (*path, name))
        done.add(name)

    for name in services:
        visit(name, ())


# --- configuration of the app services ------------------------------------------------------


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


def test_app_variables_name_real_settings(services: dict[str, dict[str, Any]]) -> None:
    """A typo in a variable name is silently ignored by pydantic-settings: catch it here."""
    for name, app in APPS.items():
        for key in environment(services[name]):
            if key.startswith("OTEL_") or key in SHARED_VARIABLES:
                continue
            assert key.startswith(f"{app.prefix}_"), f"{name}: {key} is not for this service"
            dotted = key.removeprefix(f"{app.prefix}_").lower().split("__")
            assert field_exists(app.settings, dotted), f"{name}: {key} is no setting"


def settings_from(
    service: dict[str, Any], app: App, monkeypatch: pytest.MonkeyPatch
) -> BaseSettings:
    """Build the settings class from the service's environment, mounts mapped to the host."""
    mounts = {}
    for volume in service.get("volumes") or []:
        source, target = volume.split(":")[:2] if isinstance(volume, str) else (None, None)
        if source:
            mounts[target] = source
    for key in list(os.environ):
        if key.startswith(("API_", "VERIFIER_", "WORKER_", "OTEL_")) or key in SHARED_VARIABLES:
            monkeypatch.delenv(key)
    for key, value in environment(service).items():
        monkeypatch.setenv(key, mounts.get(value, value))
    return app.settings()


@pytest.mark.parametrize("name", sorted(APPS))
def test_settings_load_from_the_compose_environment(
    services: dict[str, dict[str, Any]], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = APPS[name]
    settings = settings_from(services[name], app, monkeypatch)
    assert settings.environment.value == "staging"  # type: ignore[attr-defined]
    assert settings.host == "0.0.0.0"  # type: ignore[attr-defined]
    assert settings.port == app.port  # type: ignore[attr-defined]


def test_migrate_has_what_the_cli_loads(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`mandate-vault migrate` loads the api's settings, secrets included (staging)."""
    assert environment(services["migrate"]) == environment(services["api"])
    settings_from(services["migrate"], APPS["api"], monkeypatch)


def test_app_services_export_to_the_collector(services: dict[str, dict[str, Any]]) -> None:
    for name in APPS:
        env = environment(services[name])
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == OTLP_ENDPOINT, name
        assert env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf") == "http/protobuf"
        assert env["ENVIRONMENT"] in {"development", "staging"}, name


def test_service_urls_point_at_compose_services(services: dict[str, dict[str, Any]]) -> None:
    api = environment(services["api"])
    worker = environment(services["webhook-worker"])
    for key, value in (*api.items(), *worker.items()):
        if key.endswith(("_URL", "_DATABASE_URL")) or key == "OTEL_EXPORTER_OTLP_ENDPOINT":
            host, port = host_port(value)
            assert host in services, f"{key}: {host} is no compose service"
            listening = LISTEN_PORTS.get(host) or {APPS[host].port}
            assert port in listening, f"{key}: {host}:{port}"
    for key in ("API_KAFKA__BOOTSTRAP_SERVERS", "WORKER_KAFKA__BOOTSTRAP_SERVERS"):
        value = {**api, **worker}[key]
        assert value == "kafka:9092", key


def test_apache_kafka_in_kraft_mode(services: dict[str, dict[str, Any]]) -> None:
    env = environment(services["kafka"])
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "CONTROLLER" in env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert not any("ZOOKEEPER" in key for key in env)
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    # Apache Kafka supports the idempotent producer (the embedded test broker does not).
    assert environment(services["api"])["API_KAFKA__ENABLE_IDEMPOTENCE"] == "true"
    assert environment(services["webhook-worker"])["WORKER_KAFKA__ENABLE_IDEMPOTENCE"] == "true"


def test_webhook_encryption_key_shared_and_valid(services: dict[str, dict[str, Any]]) -> None:
    api = environment(services["api"])["API_WEBHOOK_ENCRYPTION_KEY"]
    worker = environment(services["webhook-worker"])["WORKER_WEBHOOK_ENCRYPTION_KEY"]
    assert api == worker, "the worker decrypts what the api encrypted"
    Fernet(api.encode())  # raises on a malformed key


def test_committed_secrets_are_development_placeholders(
    services: dict[str, dict[str, Any]],
) -> None:
    """Defaults for secrets are public values, marked as such; real ones come from .env."""
    public = {DEV_ENCRYPTION_KEY, DEV_SIGNING_KEY}
    for name, service in services.items():
        for key, value in environment(service).items():
            secretish = re.search(r"(KEY|SECRET|PASSWORD|TOKEN|AUTH)$", key)
            if secretish and value and key != "GF_SECURITY_ADMIN_USER":
                ok = value in public or "dev-only" in value or value == "admin"
                assert ok, f"{name}: {key} has a default that is not marked development-only"
        for key, value in environment(service).items():
            if key.endswith(("DATABASE_URL", "REDIS_URL")):
                assert "dev-only" in value, f"{name}: {key}"
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    for variable in (
        "API_TOKEN_SIGNING_KEY",
        "WEBHOOK_ENCRYPTION_KEY",
        "POSTGRES_PASSWORD",
        "REDIS_PASSWORD",
    ):
        assert f"${{{variable}:-" in text, f"{variable} cannot be overridden from .env"
    assert (COMPOSE_DIR / ".env.example").is_file()
    assert ".env" in (COMPOSE_DIR / ".gitignore").read_text(encoding="utf-8").split()


def test_redis_shared_by_the_api_and_password_protected(
    services: dict[str, dict[str, Any]],
) -> None:
    redis = services["redis"]
    assert redis["image"].startswith("redis:7.2.")
    command = redis["command"]
    password = command[command.index("--requirepass") + 1]
    assert command[command.index("--save") + 1] == "", "no snapshots: limits are short windows"
    assert command[command.index("--appendonly") + 1] == "no"
    assert "--maxmemory" in command
    assert environment(redis)["REDISCLI_AUTH"] == password, "the healthcheck authenticates"
    assert "ports" not in redis, "Redis is reachable on the compose network only"
    url = environment(services["api"])["API_REDIS_URL"]
    assert url == f"redis://:{password}@redis:6379/0"
    assert "API_REDIS_URL" not in environment(services["webhook-worker"])


def test_ssrf_allowlist_opens_only_the_sink(services: dict[str, dict[str, Any]]) -> None:
    assert environment(services["api"])["API_SSRF_ALLOWLIST"] == "webhook-sink"
    assert environment(services["webhook-worker"])["WORKER_SSRF_ALLOWLIST"] == "webhook-sink"
    assert environment(services["jwt-verifier"])["VERIFIER_SSRF_ALLOWLIST"] == ""


def test_python_containers_are_locked_down(services: dict[str, dict[str, Any]]) -> None:
    for name in [*APPS, "migrate", "webhook-sink"]:
        service = services[name]
        assert service.get("read_only") is True, name
        assert any(str(t).startswith("/tmp") for t in service.get("tmpfs", [])), name
        assert "ALL" in service.get("cap_drop", []), name
        assert "no-new-privileges:true" in service.get("security_opt", []), name
    assert services["webhook-sink"]["user"] == "10001:10001"


# --- the observability services ---------------------------------------------------------------


def bind_mounts(service: dict[str, Any]) -> dict[str, Path]:
    mounts = {}
    for volume in service.get("volumes") or []:
        source, target = volume.split(":")[:2]
        if source.startswith("/"):
            mounts[target] = Path(source)
    return mounts


def test_bind_mounts_and_secret_files_exist(resolved: dict[str, Any]) -> None:
    for name, service in resolved["services"].items():
        for target, source in bind_mounts(service).items():
            assert source.exists(), f"{name}: {source} (for {target}) does not exist"
            assert source.resolve().is_relative_to(REPO), f"{name} mounts {source}"
    for name, secret in resolved["secrets"].items():
        assert Path(secret["file"]).is_file(), name


def memory_bytes(value: str | int) -> int:
    match = re.fullmatch(r"(\d+)([kmg]?)b?", str(value).lower())
    assert match, value
    exponent = " kmg".index(match.group(2) or " ")
    return int(match.group(1)) * int(1024**exponent)


def test_collector_runs_the_repository_config_with_the_compose_overlay(
    services: dict[str, dict[str, Any]],
) -> None:
    collector = services["otel-collector"]
    mounts = bind_mounts(collector)
    configs = [arg.removeprefix("--config=") for arg in collector["command"]]
    assert configs == ["/conf/otel-collector.yaml", "/conf/otel-collector.compose.yaml"]
    assert mounts["/conf/otel-collector.yaml"] == REPO / "deploy" / "otel-collector.yaml"
    assert mounts["/conf/otel-collector.compose.yaml"] == (
        REPO / "deploy" / "otel-collector.compose.yaml"
    )
    env = environment(collector)
    for key in ("SENTRY_OTLP_TRACES_URL", "SENTRY_OTLP_LOGS_URL", "SENTRY_OTLP_AUTH"):
        assert env[key], f"the collector config requires {key}"
    limit = memory_bytes(collector["mem_limit"])
    gomemlimit = re.fullmatch(r"(\d+)MiB", env["GOMEMLIMIT"])
    assert gomemlimit, env["GOMEMLIMIT"]
    assert 0.6 * limit <= int(gomemlimit.group(1)) * 2**20 <= 0.9 * limit


def test_monitoring_configs_are_mounted(services: dict[str, dict[str, Any]]) -> None:
    deploy = REPO / "deploy"
    assert bind_mounts(services["prometheus"])["/etc/prometheus"] == deploy / "prometheus"
    assert bind_mounts(services["loki"])["/etc/loki"] == deploy / "loki"
    assert "-config.file=/etc/loki/loki.yaml" in services["loki"]["command"]
    grafana = bind_mounts(services["grafana"])
    assert grafana["/etc/grafana/provisioning"] == deploy / "grafana" / "provisioning"
    assert grafana["/var/lib/grafana/dashboards"] == deploy / "grafana" / "dashboards"
    assert environment(services["grafana"])["SENTRY_TRACE_URL_PREFIX"]
    alertmanager = services["alertmanager"]
    assert bind_mounts(alertmanager)["/etc/alertmanager/alertmanager.yml"] == (
        deploy / "alertmanager" / "alertmanager.yml"
    )
    config = (deploy / "alertmanager" / "alertmanager.yml").read_text(encoding="utf-8")
    needed = set(re.findall(r"/etc/alertmanager/secrets/(\w+)", config))
    targets = {Path(s["target"]).name for s in alertmanager["secrets"]}
    assert needed
    assert needed <= targets, needed - targets
    assert "--cluster.listen-address=" in alertmanager["command"]


def test_prometheus_scrape_targets_are_compose_services(
    services: dict[str, dict[str, Any]],
) -> None:
    config = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text("utf-8"))
    targets = [
        target
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    ]
    targets += [
        target
        for manager in config["alerting"]["alertmanagers"]
        for static in manager["static_configs"]
        for target in static["targets"]
    ]
    for target in targets:
        host, port = target.rsplit(":", 1)
        if host == "localhost":
            continue
        assert host in services, f"prometheus scrapes {target}: no compose service {host}"
        listening = LISTEN_PORTS.get(host) or {APPS[host].port}
        assert int(port) in listening, f"{host} does not listen on {port}"


def test_services_metrics_arrive_once_through_the_collector(
    services: dict[str, dict[str, Any]],
) -> None:
    """Collector-fed: Prometheus takes the collector's remote writes and scrapes no service
    (a scrape as well would store every series twice)."""
    config = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text("utf-8"))
    scraped = {
        target.rsplit(":", 1)[0]
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    }
    assert not scraped & set(APPS), f"services scraped directly: {scraped & set(APPS)}"
    assert not [j for j in config["scrape_configs"] if j.get("metrics_path") == "/api/v1/metrics"]
    command = services["prometheus"]["command"]
    assert "--web.enable-remote-write-receiver" in command
    assert "--enable-feature=exemplar-storage" in command
    collector = yaml.safe_load((REPO / "deploy/otel-collector.yaml").read_text("utf-8"))
    assert host_port(collector["exporters"]["prometheus_remote_write"]["endpoint"]) == (
        "prometheus",
        9090,
    )


def test_grafana_and_collector_reach_their_backends(services: dict[str, dict[str, Any]]) -> None:
    datasources = yaml.safe_load(
        (REPO / "deploy/grafana/provisioning/datasources/datasources.yml").read_text("utf-8")
    )
    urls = [source["url"] for source in datasources["datasources"]]
    collector = yaml.safe_load((REPO / "deploy/otel-collector.yaml").read_text("utf-8"))
    urls.append(collector["exporters"]["otlp_http/loki"]["endpoint"])
    urls.append(collector["exporters"]["prometheus_remote_write"]["endpoint"])
    for url in urls:
        host, port = host_port(url)
        assert host in services, url
        assert port in LISTEN_PORTS[host], url


# --- Dockerfiles ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    value: str
    stage: int


def parse_dockerfile(
    path: Path, build_args: dict[str, str] | None = None
) -> tuple[dict[str, str], list[Instruction]]:
    """Global ARGs (defaults, then `build_args`) and the instructions with them expanded
    (continuations joined, comments dropped)."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, f"{path}: dangling line continuation"
    args: dict[str, str] = {}
    instructions: list[Instruction] = []
    stage = -1
    for line in logical:
        keyword, _, value = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        if keyword == "ARG" and stage == -1:
            name, _, default = value.partition("=")
            args[name.strip()] = default.strip()
        instructions.append(Instruction(keyword, value.strip(), stage))
    args |= build_args or {}
    return args, [Instruction(i.keyword, expand(i.value, args), i.stage) for i in instructions]


def expand(value: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), value)


def stages(args: dict[str, str], instructions: list[Instruction]) -> list[tuple[str, str]]:
    """(image, alias) of every FROM."""
    result = []
    for ins in instructions:
        if ins.keyword == "FROM":
            parts = expand(ins.value, args).split()
            alias = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else ""
            result.append((parts[0], alias))
    return result


@pytest.fixture(params=sorted(APPS))
def image(request: pytest.FixtureRequest) -> tuple[App, dict[str, str], list[Instruction]]:
    app = APPS[request.param]
    args, instructions = parse_dockerfile(DOCKERFILE, app.build_args)
    return app, args, instructions


Image = tuple[App, dict[str, str], list[Instruction]]


def test_dockerfile_is_multi_stage_on_pinned_images(image: Image) -> None:
    _, args, instructions = image
    froms = stages(args, instructions)
    assert len(froms) >= 2, "multi-stage: builder and runtime"
    final_image, _ = froms[-1]
    assert final_image.startswith("python:3.11-slim"), final_image
    builder = next(name for name, alias in froms if alias == "builder")
    assert builder == final_image, "the venv links to the builder's interpreter: same image"
    uv_image = next(name for name, _ in froms if name.startswith("ghcr.io/astral-sh/uv"))
    assert re.fullmatch(r"ghcr\.io/astral-sh/uv:\d+\.\d+\.\d+", uv_image), uv_image
    for name, _ in froms:
        assert ":" in name or name in {alias for _, alias in froms}, f"{name} has no tag"
        assert not name.endswith(":latest"), name


def test_dockerfile_two_phase_uv_sync(image: Image) -> None:
    app, _, instructions = image
    runs = [(i, ins) for i, ins in enumerate(instructions) if "uv sync" in ins.value]
    assert len(runs) == 2, "two uv sync runs: dependencies, then the workspace members"
    (first_at, first), (second_at, second) = runs
    for ins in (first, second):
        assert ins.keyword == "RUN"
        assert "--frozen" in ins.value
        assert "--no-dev" in ins.value
        assert f"--package {app.distribution}" in ins.value, ins.value
    assert "--no-install-workspace" in first.value
    assert "--no-install-workspace" not in second.value
    copies = [(i, ins.value) for i, ins in enumerate(instructions) if ins.keyword == "COPY"]
    sources_at = [i for i, value in copies if "/src " in value]
    assert sources_at, "sources are copied"
    assert first_at < min(sources_at) < second_at, "sources only after the dependency layer"
    copied = " ".join(value for i, value in copies if i < first_at)
    members = [
        REPO / "shared",
        *sorted((REPO / "services").iterdir()),
        *sorted((REPO / "tools").iterdir()),
    ]
    for member in members:
        if (member / "pyproject.toml").is_file():
            relative = (member / "pyproject.toml").relative_to(REPO).as_posix()
            assert relative in copied, f"phase 1 needs every member's metadata: {relative}"
    assert "uv.lock" in copied


def test_dockerfile_runtime_is_non_root_with_one_process(image: Image) -> None:
    app, args, instructions = image
    final = max(ins.stage for ins in instructions)
    runtime = [ins for ins in instructions if ins.stage == final]
    users = [ins.value for ins in runtime if ins.keyword == "USER"]
    assert users, "the runtime stage sets USER"
    user = users[-1].split(":")[0]
    assert user.isdigit(), "numeric USER, so runAsNonRoot can verify it"
    assert int(user) == 10001
    cmds = [ins.value for ins in instructions if ins.keyword == "CMD"]
    assert len(cmds) == 1
    assert json.loads(cmds[0]) == ["sh", "-c", 'exec python -m "$SERVICE_MODULE"']
    assert not [ins for ins in instructions if ins.keyword == "ENTRYPOINT"]
    assert (REPO / "services" / app.directory / "src" / app.module / "__main__.py").is_file()
    copies = [ins.value for ins in runtime if ins.keyword == "COPY"]
    assert copies, "the runtime stage copies the venv"
    assert all(value.startswith("--from=builder") for value in copies), copies
    env = " ".join(ins.value for ins in runtime if ins.keyword == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert f"{app.prefix}_HOST=0.0.0.0" in env, "containers bind all interfaces"
    assert f"SERVICE_MODULE={app.module} " in env
    assert "/app/.venv/bin" in env
    assert "latest" not in " ".join(f"{k}={v}" for k, v in args.items())


def test_dockerfile_healthcheck_and_port(image: Image) -> None:
    app, _, instructions = image
    exposed = [ins.value for ins in instructions if ins.keyword == "EXPOSE"]
    assert exposed == [str(app.port)]
    checks = [ins.value for ins in instructions if ins.keyword == "HEALTHCHECK"]
    assert len(checks) == 1
    command = json.loads(checks[0][checks[0].index("CMD") + 3 :].strip())
    assert command[0] == "python", "no curl in python:*-slim"
    assert "/healthz" in command[-1]
    env = " ".join(ins.value for ins in instructions if ins.keyword == "ENV")
    assert f"SERVICE_PORT_VARIABLE={app.prefix}_PORT " in env
    assert f"SERVICE_DEFAULT_PORT={app.port} " in env


def test_dockerfile_healthcheck_probes_the_port_the_service_listens_on() -> None:
    """The probe, run as the image runs it: the default port, or the one an operator set."""
    _, instructions = parse_dockerfile(DOCKERFILE)
    check = next(ins.value for ins in instructions if ins.keyword == "HEALTHCHECK")
    command = [sys.executable, *json.loads(check[check.index("CMD") + 3 :].strip())[1:]]
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Healthy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port, closed = str(server.server_address[1]), str(free_port())
    image_env = {"PATH": os.environ["PATH"], "SERVICE_PORT_VARIABLE": "API_PORT"}
    try:
        for env, healthy in (
            ({"SERVICE_DEFAULT_PORT": port}, True),
            ({"SERVICE_DEFAULT_PORT": closed, "API_PORT": port}, True),
            ({"SERVICE_DEFAULT_PORT": port, "API_PORT": closed}, False),
        ):
            result = subprocess.run(
                command, env=image_env | env, capture_output=True, timeout=10, check=False
            )
            assert (result.returncode == 0) is healthy, (env, result.stderr)
    finally:
        server.shutdown()


class _Healthy(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_api_image_carries_the_migration_cli() -> None:
    scripts = APPS["api"].pyproject["project"]["scripts"]
    assert scripts["mandate-vault"] == "mandate_vault_api.cli:main"


def test_dockerignore_is_an_allow_list() -> None:
    lines = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "start from nothing, then allow what the images need"
    allowed = {line[1:] for line in lines if line.startswith("!")}
    assert {"pyproject.toml", "uv.lock", "shared/src/", "services/*/src/"} <= allowed
    for secret_or_state in (".venv", ".git", "var", "tests", ".env"):
        assert not any(a.startswith(secret_or_state) for a in allowed), secret_or_state


# --- the webhook sink, for real --------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def sink() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(SINK)],
        env={**os.environ, "SINK_PORT": str(port)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=1) as response:
                    assert response.status == 200
                break
            except OSError:
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                assert time.monotonic() < deadline, "sink did not start"
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        for stream in (process.stdout, process.stderr):
            if stream:
                stream.close()


def test_webhook_sink_records_deliveries(sink: str) -> None:
    body = b'{"type": "mandate.created"}'
    request = urllib.request.Request(
        f"{sink}/hooks",
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "webhook-id": "msg_1",
            "webhook-timestamp": "1614265330",
            "webhook-signature": "v1,abc=",
            "Authorization": "Bearer should-not-be-logged",
        },
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200
    with urllib.request.urlopen(f"{sink}/requests", timeout=5) as response:
        received = json.loads(response.read())
    assert len(received) == 1
    entry = received[0]
    assert entry["path"] == "/hooks"
    assert entry["body"] == body.decode()
    assert entry["headers"]["webhook-id"] == "msg_1"
    assert entry["headers"]["webhook-signature"] == "v1,abc="
    assert entry["headers"]["authorization"] == "[hidden]"


def test_the_sink_runs_on_the_plain_python_image(services: dict[str, dict[str, Any]]) -> None:
    sink = services["webhook-sink"]
    assert sink["image"].startswith("python:3.11")
    assert "build" not in sink
    assert bind_mounts(sink)["/sink/sink.py"] == SINK
    imports = re.findall(r"^(?:from|import) (\w+)", SINK.read_text("utf-8"), re.MULTILINE)
    assert set(imports) <= set(sys.stdlib_module_names) | {"__future__"}, imports
