"""`make load` end to end: scripts/load.py drives load/locustfile.py's mix against a real api
(PostgreSQL, the broker, the jwt-verifier) for a few seconds and writes its report.

Nothing here judges speed: the run is tiny and the machine shared. It proves the tooling works
against any base URL with given credentials and issuer key, every request of the mix is made
and answered as expected, and the report (table, causes, achieved vs target, plots) is written
where it was asked to go.
"""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mandate_vault_api.roles import Role
from mandate_vault_harness.broker import Broker
from mandate_vault_harness.issuer import Issuer
from mandate_vault_harness.services import REPO_ROOT
from mandate_vault_harness.system import PASSWORD, QUICK_API, System, Tenant

pytestmark = pytest.mark.timeout(180)

USERS, RPS, SECONDS = 2, 10, 8
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Every user walks through each of these once before following the weights.
REQUESTS = [
    "POST /api/v1/auth/login",
    "POST /api/v1/auth/refresh",
    "POST /api/v1/mandates [valid]",
    "POST /api/v1/mandates [tampered]",
    "POST /api/v1/mandates [expired]",
    "GET /api/v1/mandates [first page]",
    "GET /api/v1/mandates [next page]",
    "GET /api/v1/mandates/{id}",
    "POST /api/v1/webhooks",
    "GET /api/v1/webhooks/{id}",
    "PATCH /api/v1/webhooks/{id}",
    "POST /api/v1/webhooks/{id}/rotate-secret",
    "DELETE /api/v1/webhooks/{id}",
]


@pytest.fixture(scope="module")
def api_stack(postgres_server: None, broker: Broker) -> Iterator[tuple[System, Tenant, Issuer]]:
    """api + jwt-verifier on a fresh PostgreSQL database; a tenant admin trusting `issuer`."""
    issuer = Issuer(did="did:web:load-bank.example", kid="load-key-1")
    with System(issuers=[issuer], broker=broker, partitions=1, api_tuning=QUICK_API) as stack:
        tenant = stack.add_tenant("acme-corp", users=True)
        stack.start_api()  # SSRF allow-list 127.0.0.1: the mix's webhook URLs pass
        yield stack, tenant, issuer


def _png_size(path: Path) -> tuple[int, int, int]:
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE), f"{path.name} is not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height, len(data)


def _table_counts(report: str) -> dict[str, int]:
    """request -> count, from report.md's summary table."""
    counts = {}
    for match in re.finditer(r"^\| `([^`]+)` \| ([\d,]+) \|", report, re.MULTILINE):
        counts[match.group(1)] = int(match.group(2).replace(",", ""))
    return counts


def run_load_script(
    stack: System, tenant: Tenant, issuer: Issuer, tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    """scripts/load.py against the stack's api, as `make load` runs it, writing under tmp_path."""
    key = tmp_path / "issuer.pem"
    key.write_bytes(issuer.pem())
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOAD_")}
    env["LOAD_PASSWORD"] = PASSWORD  # the password never goes on a command line
    command = [
        sys.executable, "scripts/load.py",
        "--host", stack.api.url, "--email", tenant.emails[Role.TENANT_ADMIN],
        "--users", str(USERS), "--rps", str(RPS), "--seconds", str(SECONDS),
        "--issuer-key", str(key), "--issuer", issuer.did, "--kid", issuer.kid,
        "--out-dir", str(tmp_path / "reports"), "--progress-seconds", "2",
    ]  # fmt: skip
    started = time.monotonic()
    run = subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=150, check=False
    )
    assert run.returncode == 0, run.stdout + run.stderr
    print(f"scripts/load.py took {time.monotonic() - started:.1f} s\n{run.stdout}")
    return run


def check_plots(run_dir: Path) -> None:
    assert sorted(p.name for p in run_dir.glob("*.png")) == ["latency.png", "throughput.png"]
    for name in ("throughput.png", "latency.png"):
        width, height, size = _png_size(run_dir / name)
        assert width >= 600
        assert height >= 300
        assert size > 15_000, f"{name} is only {size} bytes: an empty plot?"


def check_report(run_dir: Path) -> None:
    report = (run_dir / "report.md").read_text()
    summary = json.loads((run_dir / "summary.json").read_text())
    counts = _table_counts(report)
    for name in REQUESTS:
        assert counts.get(name, 0) > 0, f"{name} missing from the table:\n{report}"
        assert summary["requests"][name]["count"] == counts[name]
    assert re.search(r"^\| \*\*Total\*\* \| [\d,]+ \|", report, re.MULTILINE)
    total = summary["requests"]["Total"]
    assert total["count"] >= sum(counts[name] for name in REQUESTS)
    for column in ("p50_ms", "p95_ms", "p99_ms", "max_ms"):
        assert total[column] > 0

    # Achieved vs target, and no failure: a tampered or expired mandate stored as anything
    # but REJECTED, or a wrong answer anywhere, would be one.
    assert f"target **{RPS} req/s**" in report
    assert summary["target_rps"] == RPS
    assert summary["achieved_rps"] > 0
    assert "## Errors by cause" in report
    assert "No request failed." in report, report
    assert summary["errors_by_cause"] == {}
    assert total["failures"] == 0


def test_load_run_writes_the_report(
    api_stack: tuple[System, Tenant, Issuer], tmp_path: Path
) -> None:
    stack, tenant, issuer = api_stack
    run = run_load_script(stack, tenant, issuer, tmp_path)
    output = run.stdout + run.stderr

    # Progress while it ran, and the summary with achieved vs target at the end.
    assert re.search(
        rf"\[\s*\d+s/{SECONDS}s\] users\s+\d+\s+req/s\s+[\d.]+ \(target {RPS}\)", output
    )
    assert f"target {RPS} req/s" in run.stdout
    assert PASSWORD not in output

    (run_dir,) = (tmp_path / "reports").glob("load-*")
    check_plots(run_dir)
    check_report(run_dir)
    assert not (REPO_ROOT / "reports" / run_dir.name).exists()
