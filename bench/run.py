"""`make bench`: paired benchmarks on real parts; prints a table, writes reports/bench-<date>.md.

Pairs run alternately in one invocation (A B A B ...), so drift on a shared machine hits both
sides; each pair reports its rounds, the medians and the ratio taken pair by pair.

1. Telemetry (bench/telemetry.py): cost on a trivial endpoint (`GET /api/v1/info`), each
   configuration run at the same time as a telemetry-off twin: everything on, production
   defaults, without exemplars, without semantic-convention metrics, collector black-holed;
   the fast pipeline against the SDK pipeline there and on create-mandate.
2. Create-mandate (bench/create.py): closed-loop throughput against the telemetry-off
   trivial endpoint, CPU per create per process, and an open-loop overload sweep.
3. Webhooks (bench/webhooks.py): end to end latency of one subscription, a noisy
   neighbour, and one subscription's capacity with 1 and 2 workers.

Knobs: BENCH_ROUNDS (3), BENCH_SECONDS (8), BENCH_CONNECTIONS (16), BENCH_STEP_SECONDS (15),
BENCH_QUICK=1 (seconds-long smoke run), each section module's own (see its docstring), and
BENCH_ONLY=<section>[,<section>...] to run only some sections (telemetry, create, webhooks).

Named figures go to reports/bench-<date>.json beside the markdown, under flat dotted keys such
as "create.closed_loop_rps" or "webhook.one_subscription.p99_ms" -> number. A run of only some
sections updates their keys in the day's JSON and writes its markdown as
bench-<date>-<sections>.md.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import create as bench_create
from bench import telemetry as bench_telemetry
from bench import webhooks as bench_webhooks
from bench.parts import Bench

ROOT = Path(__file__).resolve().parent.parent

QUICK = os.environ.get("BENCH_QUICK") == "1"
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "1" if QUICK else "3"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "2" if QUICK else "8"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "16"))
LATENCY_SECONDS = float(os.environ.get("BENCH_LATENCY_SECONDS", "3" if QUICK else "20"))
REPORTS = Path(os.environ.get("BENCH_REPORTS_DIR", ROOT / "reports"))
SECTIONS = ("telemetry", "create", "webhooks")
ONLY = [name.strip() for name in os.environ.get("BENCH_ONLY", "").split(",") if name.strip()]


def _machine() -> str:
    return f"{os.cpu_count()} cores, {socket.gethostname()}, Python {sys.version.split()[0]}"


def _wanted(section: str) -> bool:
    return not ONLY or section in ONLY


def flatten(figures: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"create": {"cpu_ms": {"api": 1}}} -> {"create.cpu_ms.api": 1}: the keys issues name."""
    flat: dict[str, Any] = {}
    for key, value in figures.items():
        if isinstance(value, dict):
            flat |= flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _write_figures(path: Path, figures: dict[str, Any], started: datetime) -> None:
    """Merge this run's figures into the day's JSON (a partial run keeps the other keys)."""
    found: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    found.update(flatten(figures))
    found["meta"] = {"machine": _machine(), "started": started.isoformat(timespec="seconds")}
    path.write_text(json.dumps(found, indent=2, sort_keys=True) + "\n")


def main() -> None:
    unknown = set(ONLY) - set(SECTIONS)
    if unknown:
        sys.exit(f"BENCH_ONLY: unknown sections {sorted(unknown)}; known: {', '.join(SECTIONS)}")
    started = datetime.now(UTC)
    REPORTS.mkdir(exist_ok=True)
    figures: dict[str, Any] = {}
    lines: list[str] = []
    with Bench() as stack:
        if _wanted("telemetry"):  # telemetry.* keys (bench/telemetry.py)
            telemetry_lines, telemetry_figures = bench_telemetry.section(stack)
            lines += telemetry_lines
            figures |= telemetry_figures
        if _wanted("create"):  # create.* and overload.* keys (bench/create.py)
            create_lines, create_figures = bench_create.section(stack, REPORTS, _stem(started))
            lines += create_lines
            figures |= create_figures
        if _wanted("webhooks"):
            lines += bench_webhooks.run(stack, figures)
    header = [
        f"# Benchmark {started.isoformat(timespec='seconds')}",
        "",
        f"Machine: {_machine()}. Load generators on the same cores as the services. wrk -t1 "
        f"-c{CONNECTIONS} -d{SECONDS}s per throughput run, {ROUNDS} alternating rounds; "
        "latency from the harness's constant-rate open-loop generator. All telemetry "
        "on means 100 % traces with batched OTLP export, the guide's metrics and a JSON "
        "access-log line (also shipped over OTLP) per request.",
        "",
    ]
    report = "\n".join(header + lines)
    print("\n" + report)
    name = _stem(started) + (f"-{'-'.join(ONLY)}" if ONLY else "")
    path = REPORTS / f"{name}.md"
    path.write_text(report + "\n")
    _write_figures(REPORTS / f"{_stem(started)}.json", figures, started)
    print(f"report: {path}, figures: {REPORTS / _stem(started)}.json")


def _stem(started: datetime) -> str:
    return "bench-quick" if QUICK else f"bench-{started:%Y-%m-%d}"


if __name__ == "__main__":
    main()
