"""`make bench` and `make soak` run end to end (a seconds-long version) and write their reports.

These check the tooling, not the speed: no figure is asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, f"scripts/{script}"],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_bench_quick_run_writes_every_table(tmp_path: Path) -> None:
    result = run("bench.py", {"BENCH_QUICK": "1", "BENCH_REPORTS_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = (tmp_path / "bench-quick.md").read_text()
    for heading in (
        "Telemetry cost, trivial endpoint",
        "Create-mandate: closed loop and CPU per create",
        "Create-mandate under overload",
        "Webhook end to end at",
    ):
        assert heading in report
    for row in (
        "| telemetry off |",
        "| on, 10 % traces |",
        "collector black-holed",
        "| create, production defaults",
        "| 200% |",
    ):
        assert row in report
    assert "lost 0" in report
    figures = json.loads((tmp_path / "bench-quick.json").read_text())
    for key in ("closed_loop_rps", "ratio_to_trivial_off"):
        assert figures["create"][key] > 0
    assert set(figures["create"]["cpu_ms"]) == {"api", "verifier", "postgres", "total"}
    assert set(figures["overload"]["at_200pct"]) >= {
        "goodput_ratio",
        "admitted_p99_ms",
        "refused_p99_ms",
    }
    assert "recovery_s" in figures["overload"]
    assert (tmp_path / "bench-quick-overload.png").stat().st_size > 0


def test_soak_quick_run_reports_memory(tmp_path: Path) -> None:
    result = run(
        "soak.py",
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
