"""`make bench` and `make soak` run end to end (a seconds-long version) and write their reports.

These check the tooling, not the speed: no figure is asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mandate_vault_harness.cpu import split_cores

ROOT = Path(__file__).resolve().parents[2]
TELEMETRY_KEYS = (
    "telemetry.full_ratio",
    "telemetry.production_ratio",
    "telemetry.fast_vs_sdk.trivial",
    "telemetry.fast_vs_sdk.create",
)
CREATE_KEYS = (
    "create.closed_loop_rps",
    "create.ratio_to_trivial_off",
    "create.cpu_ms.api",
    "create.cpu_ms.verifier",
    "create.cpu_ms.postgres",
    "create.cpu_ms.total",
    "overload.at_200pct.goodput_ratio",
    "overload.at_200pct.admitted_p99_ms",
    "overload.at_200pct.refused_p99_ms",
    "overload.recovery_s",
    "overload.sweep_at_200pct.goodput_ratio",
    "overload.split_cores.at_200pct.goodput_ratio",
)
WEBHOOK_KEYS = (
    "webhook.one_subscription.p99_ms",
    "webhook.one_subscription.lost",
    "webhook.noisy_neighbour.others_p99_ms",
    "webhook.noisy_neighbour.others_delivered_ratio",
    "webhook.noisy_neighbour.slow_lost",
    "webhook.max_per_subscription_per_s.workers_1",
    "webhook.max_per_subscription_per_s.workers_2",
    "webhook.worker_cpu_ms_per_delivery",
)


def run(module: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_bench_quick_run_writes_every_table(tmp_path: Path) -> None:
    result = run("bench.run", {"BENCH_QUICK": "1", "BENCH_REPORTS_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = (tmp_path / "bench-quick.md").read_text()
    for heading in (
        "Telemetry cost, trivial endpoint",
        "Fast pipeline vs SDK pipeline",
        "Create-mandate: closed loop and CPU per create",
        "Create-mandate under overload: the system (api, jwt-verifier",
        "Create-mandate under overload: the load generator on the same two cores",
        "Webhooks, one subscription at",
        "Webhooks, noisy neighbour",
        "Webhooks, capacity of ONE subscription",
    ):
        assert heading in report
    for row in (
        "| off beside it, req/s |",
        "| all on, fast pipeline |",
        "| all on, SDK pipeline |",
        "| production defaults",
        "| create, production defaults",
        "| 200% |",
    ):
        assert row in report
    figures = json.loads((tmp_path / "bench-quick.json").read_text())
    for key in (*TELEMETRY_KEYS, *CREATE_KEYS, *WEBHOOK_KEYS):
        assert isinstance(figures[key], int | float), key
    assert figures["create.closed_loop_rps"] > 0
    assert figures["webhook.one_subscription.lost"] == 0
    assert figures["webhook.noisy_neighbour.slow_lost"] == 0
    assert (tmp_path / "bench-quick-overload.png").stat().st_size > 0


def test_bench_can_run_one_section(tmp_path: Path) -> None:
    result = run(
        "bench.run",
        {"BENCH_QUICK": "1", "BENCH_ONLY": "nonsense", "BENCH_REPORTS_DIR": str(tmp_path)},
    )
    assert result.returncode != 0
    assert "unknown sections" in result.stdout + result.stderr


def test_soak_quick_run_reports_memory(tmp_path: Path) -> None:
    result = run(
        "bench.soak",
        {
            "SOAK_REQUESTS": "300",
            "SOAK_MINUTES": "0.1",
            "SOAK_SAMPLE_SECONDS": "3",
            "SOAK_REPORTS_DIR": str(tmp_path),
        },
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (report,) = tmp_path.glob("soak-*.md")
    text = report.read_text()
    for service in ("| api |", "| jwt-verifier |", "| webhook-worker |"):
        assert service in text


def test_split_cores_pins_the_system_and_the_generator_apart_then_back() -> None:
    cores = os.sched_getaffinity(0)
    if len(cores) < 2:
        pytest.skip("one core: nothing to split")
    system = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with split_cores([system.pid]) as split:
            assert split
            assert os.sched_getaffinity(system.pid) == cores - {max(cores)}
            assert os.sched_getaffinity(0) == {max(cores)}
        assert os.sched_getaffinity(system.pid) == cores == os.sched_getaffinity(0)
    finally:
        system.kill()
        system.wait()
