"""Real Prometheus and Alertmanager (Debian binaries) next to the real services.

`Monitoring` starts Alertmanager with the repository's routing (deploy/alertmanager/) and then
Prometheus with a generated configuration: the service jobs of config/prometheus.yml, the
guide's local setup that scrapes the services directly (same job names and metrics path, targets
on free loopback ports; compose and Kubernetes get the same series through the collector), a 1 s
scrape interval and
deploy/prometheus/alerts.yml loaded unchanged. Prometheus starts first and learns the service
targets through file-based discovery once they run (`set_target`), so its rule groups (30 s and
1 min intervals, fixed by alerts.yml) start their clocks as early as possible.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from mandate_vault_harness.net import free_port
from mandate_vault_harness.services import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"
PROMETHEUS_CONFIG = REPO_ROOT / "config" / "prometheus.yml"  # the direct scrape (make run)
ALERT_RULES = DEPLOY / "prometheus" / "alerts.yml"
ALERTMANAGER_CONFIG = DEPLOY / "alertmanager" / "alertmanager.yml"
ALERTMANAGER_SECRETS = DEPLOY / "compose" / "alertmanager-secrets"  # committed placeholders
SECRETS_MOUNT = "/etc/alertmanager/secrets/"
SERVICE_METRICS_PATH = "/api/v1/metrics"
# config/prometheus.yml scrapes make run's ports.
SERVICE_OF_PORT = {"8000": "api", "8001": "jwt-verifier", "8002": "webhook-worker"}


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        msg = f"{name} is missing: `make setup` installs the Debian prometheus packages"
        raise RuntimeError(msg)
    return path


def service_jobs() -> dict[str, str]:
    """job name -> service, for the jobs of config/prometheus.yml that scrape a service's
    /api/v1/metrics (the contract metrics)."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    jobs = {}
    for job in config["scrape_configs"]:
        if job.get("metrics_path") != SERVICE_METRICS_PATH:
            continue
        (target,) = job["static_configs"][0]["targets"]
        jobs[job["job_name"]] = SERVICE_OF_PORT[target.rsplit(":", 1)[1]]
    assert sorted(jobs.values()) == ["api", "jwt-verifier", "webhook-worker"], jobs
    return jobs


class PromQLError(RuntimeError):
    pass


class Monitoring:
    """Alertmanager, then Prometheus, each a real process on a free loopback port."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.prometheus_port = free_port()
        self.alertmanager_port = free_port()
        self.jobs = service_jobs()
        self.targets_dir = workdir / "targets"
        self._processes: list[tuple[str, subprocess.Popen[bytes], Path]] = []
        self.client = httpx.Client(base_url=self.prometheus_url, timeout=10)

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.prometheus_port}"

    @property
    def alertmanager_url(self) -> str:
        return f"http://127.0.0.1:{self.alertmanager_port}"

    # --- configuration -------------------------------------------------------------------
    def _alertmanager_config(self) -> Path:
        """The repository's routing, with the secret files' mount point moved to a temp dir."""
        secrets = self.workdir / "alertmanager-secrets"
        shutil.copytree(ALERTMANAGER_SECRETS, secrets)
        text = ALERTMANAGER_CONFIG.read_text(encoding="utf-8")
        assert SECRETS_MOUNT in text
        path = self.workdir / "alertmanager.yml"
        path.write_text(text.replace(SECRETS_MOUNT, f"{secrets}/"), encoding="utf-8")
        return path

    def _prometheus_config(self) -> Path:
        rules = self.workdir / "alerts.yml"
        shutil.copyfile(ALERT_RULES, rules)  # unchanged, next to the generated config
        self.targets_dir.mkdir()
        scrape_configs: list[dict[str, Any]] = [
            {
                "job_name": job,
                "metrics_path": SERVICE_METRICS_PATH,
                "file_sd_configs": [
                    {"files": [str(self.targets_dir / f"{job}.json")], "refresh_interval": "1s"}
                ],
            }
            for job in self.jobs
        ]
        scrape_configs += [
            {
                "job_name": "prometheus",
                "static_configs": [{"targets": [f"127.0.0.1:{self.prometheus_port}"]}],
            },
            {
                "job_name": "alertmanager",
                "static_configs": [{"targets": [f"127.0.0.1:{self.alertmanager_port}"]}],
            },
        ]
        config = {
            "global": {
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "evaluation_interval": "1s",
            },
            "rule_files": [rules.name],
            "alerting": {
                "alertmanagers": [
                    {"static_configs": [{"targets": [f"127.0.0.1:{self.alertmanager_port}"]}]}
                ]
            },
            "scrape_configs": scrape_configs,
        }
        path = self.workdir / "prometheus.yml"
        path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        return path

    # --- processes -----------------------------------------------------------------------
    def _spawn(self, name: str, command: list[str]) -> None:
        log = self.workdir / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, cwd=self.workdir
            )
        self._processes.append((name, process, log))

    def _wait_ready(self, name: str, url: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        _, process, log = next(p for p in self._processes if p[0] == name)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                msg = f"{name} exited with {process.returncode}:\n{log.read_text()}"
                raise RuntimeError(msg)
            try:
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        msg = f"{name} not ready after {timeout}s:\n{log.read_text()}"
        raise TimeoutError(msg)

    def start(self) -> Monitoring:
        alertmanager_config = self._alertmanager_config()
        self._spawn(
            "alertmanager",
            [
                _binary("prometheus-alertmanager"),
                f"--config.file={alertmanager_config}",
                f"--storage.path={self.workdir / 'alertmanager-data'}",
                f"--web.listen-address=127.0.0.1:{self.alertmanager_port}",
                "--cluster.listen-address=",
                "--log.level=warn",
            ],
        )
        self._wait_ready("alertmanager", self.alertmanager_url)
        prometheus_config = self._prometheus_config()
        self._spawn(
            "prometheus",
            [
                _binary("prometheus"),
                f"--config.file={prometheus_config}",
                f"--storage.tsdb.path={self.workdir / 'prometheus-data'}",
                f"--web.listen-address=127.0.0.1:{self.prometheus_port}",
                # Exemplars from the OpenMetrics scrape: trace ids on the latency histograms.
                "--enable-feature=exemplar-storage",
                "--log.level=warn",
            ],
        )
        self._wait_ready("prometheus", self.prometheus_url)
        return self

    def stop(self) -> None:
        self.client.close()
        for _, process, _ in reversed(self._processes):
            if process.poll() is None:
                process.terminate()
        for _, process, _ in reversed(self._processes):
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._processes.clear()

    def logs(self) -> str:
        return "\n".join(f"--- {name}\n{log.read_text()}" for name, _, log in self._processes)

    # --- targets and the HTTP API ----------------------------------------------------------
    def set_target(self, service: str, url: str) -> None:
        """Point the job that scrapes `service` at `url` (file discovery picks it up)."""
        (job,) = [job for job, name in self.jobs.items() if name == service]
        path = self.targets_dir / f"{job}.json"
        staged = path.with_suffix(".staged")
        staged.write_text(json.dumps([{"targets": [url.removeprefix("http://")]}]))
        os.replace(staged, path)

    def api(self, path: str, **params: str) -> Any:
        response = self.client.get(f"/api/v1/{path}", params=params)
        body = response.json()
        if body.get("status") != "success":
            raise PromQLError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def target_health(self) -> dict[str, str]:
        """job -> health (and the last scrape error), for failure messages."""
        return {
            t["labels"]["job"]: f"{t['health']} {t['lastError']}".strip()
            for t in self.api("targets")["activeTargets"]
        }

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; the result as a list of {metric, value} (scalars become one)."""
        data = self.api("query", query=expr)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        if data["resultType"] != "vector":
            raise PromQLError(f"unexpected result type {data['resultType']} for {expr!r}")
        return list(data["result"])

    def exemplars(self, expr: str, seconds: float = 600) -> list[dict[str, Any]]:
        """/api/v1/query_exemplars over the last `seconds`: one entry per series."""
        now = time.time()
        data = self.api("query_exemplars", query=expr, start=str(now - seconds), end=str(now))
        return list(data)


def finite(result: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in result if math.isfinite(float(r["value"][1]))]
