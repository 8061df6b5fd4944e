"""demo_monitoring_system.py against a real stack (PostgreSQL, the broker, three services)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import demo_monitoring_system as demo
import pytest

from mandate_vault_api.roles import Role
from mandate_vault_harness.broker import Broker
from mandate_vault_harness.issuer import DEMO_ISSUER, DEMO_KID, Issuer
from mandate_vault_harness.services import REPO_ROOT
from mandate_vault_harness.system import PASSWORD, QUICK_API, QUICK_WORKER, System

pytestmark = pytest.mark.timeout(240)


def run_demo(
    urls: dict[str, str], database_url: str, *args: str
) -> subprocess.CompletedProcess[str]:
    targets = ["--api", urls["api"], "--verifier", urls["verifier"], "--worker", urls["worker"]]
    return subprocess.run(
        [sys.executable, "demo_monitoring_system.py", *targets, *args],
        cwd=REPO_ROOT,
        env={**os.environ, "API_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )


def test_demo_drives_the_stack_and_prints_every_guide_metric(
    broker: Broker, tmp_path: Path
) -> None:
    key_file = tmp_path / "demo-issuer-key.pem"  # the demo issuer's, not var/'s
    issuer = Issuer.from_pem_file(key_file, DEMO_ISSUER, DEMO_KID, create=True)
    worker = {**QUICK_WORKER, "WORKER_RETRY_SCHEDULE_SECONDS": "0.2"}
    with System(
        issuers=[issuer], broker=broker, api_tuning=QUICK_API, worker_tuning=worker
    ) as stack:
        tenant = stack.add_tenant("acme-corp", users=True)
        stack.start_services()
        assert stack.verifier is not None
        urls = {
            "api": stack.api.url,
            "verifier": stack.verifier.url,
            "worker": stack.workers[0].url,
        }
        key = ["--issuer-key", str(key_file), "--wait", "15"]
        bootstrapped = run_demo(urls, stack.database_url, *key)
        # The second run uses given credentials (the test tenant also trusts the demo issuer).
        email = tenant.emails[Role.TENANT_ADMIN]
        credentials = ["--email", email, "--password", PASSWORD, "--mandates", "1"]
        given = run_demo(urls, stack.database_url, *key, *credentials)

    print(bootstrapped.stdout)
    assert bootstrapped.returncode == 0, bootstrapped.stdout + bootstrapped.stderr
    out = bootstrapped.stdout
    for section in demo.SECTIONS:
        assert f"\n## {section}\n" in out, section
    assert "bootstrap: created tenant monitoring-demo" in out
    assert "(gave up waiting" not in out
    # Valid and rejected mandates, as the verifier classified them.
    assert '"201 ACTIVE/VALID": 5' in out
    assert '"201 REJECTED/SIG_INVALID": 1' in out
    assert '"201 REJECTED/EXPIRED": 1' in out
    for status in ("VALID", "SIG_INVALID", "ISSUER_UNKNOWN", "EXPIRED"):
        assert f"status={status}" in out, status
    # Failed logins and the lockout; webhooks delivered with valid signatures, and failures.
    for result in ("success", "failed", "locked_out"):
        assert f"result={result}" in out, result
    assert '"/hooks": 8' in out
    assert '"INVALID"' not in out
    assert "status=success" in out
    assert "status=failed" in out
    assert re.search(r"tenant_id=monitoring-demo +5   <- this demo", out), "mandates_active"
    assert "p95" in out
    assert "success rate" in out

    assert given.returncode == 0, given.stdout + given.stderr
    assert f"logged in as {email} (tenant {tenant.id})" in given.stdout
    assert "bootstrap:" not in given.stdout


def test_demo_quantiles_match_prometheus_interpolation() -> None:
    buckets = {0.1: 50.0, 0.5: 90.0, 1.0: 100.0, float("inf"): 100.0}
    assert demo.quantile(0.5, buckets) == pytest.approx(0.1)
    assert demo.quantile(0.9, buckets) == pytest.approx(0.5)
    assert demo.quantile(0.95, buckets) == pytest.approx(0.75)
    assert demo.quantile(0.25, buckets) == pytest.approx(0.05)
    # Beyond the last finite bucket Prometheus answers that bucket's upper bound.
    assert demo.quantile(0.99, {0.1: 1.0, float("inf"): 2.0}) == pytest.approx(0.1)
    assert demo.quantile(0.5, {0.1: 0.0, float("inf"): 0.0}) is None


def test_demo_counter_deltas_survive_a_restart() -> None:
    before = demo.Scrape.parse('x_total{a="1"} 5\nx_total{a="2"} 7\n')
    after = demo.Scrape.parse('x_total{a="1"} 8\nx_total{a="2"} 2\nx_total{a="3"} 1\n')
    run = demo.delta(after, before)
    assert run.by("x_total", "a") == {("1",): 3.0, ("2",): 2.0, ("3",): 1.0}
