"""`make bench`: paired benchmarks on real parts; prints a table, writes reports/bench-<date>.md.

Pairs run alternately in one invocation (A B A B ...), so drift on a shared machine hits both
sides; each pair reports its rounds, the medians and the ratio taken pair by pair.

1. Telemetry cost on a trivial endpoint (`GET /api/v1/info`, one api process per run, wrk):
   off vs on at 100 % and 10 % trace sampling; the contrib FastAPI instrumentation (the usual
   stack) for comparison; and the collector reachable vs black-holed.
2. Create-mandate vs the trivial endpoint of the same api process (verify over HTTP, mandate +
   outbox rows in PostgreSQL, all telemetry on), wrk throughput.
3. Create-mandate latency at a constant rate (open model: no coordinated omission).
4. Webhooks (scripts/bench_webhooks.py): end to end latency of one subscription, a noisy
   neighbour, and one subscription's capacity with 1 and 2 workers.

Knobs: BENCH_ROUNDS (3), BENCH_SECONDS (8), BENCH_CONNECTIONS (16), BENCH_CREATE_RPS (250),
BENCH_LATENCY_SECONDS (20), BENCH_QUICK=1 (seconds-long smoke run), the webhook section's own
(see its docstring), and BENCH_ONLY=<section>[,<section>...] to run only some sections
(telemetry, create, latency, webhooks).

Named figures go to reports/bench-<date>.json beside the markdown, flat keys such as
"webhook.one_subscription.p99_ms" -> number: a section adds its own to the `figures` dict it
is given. A run of only some sections updates their keys in the day's JSON and writes its
markdown as bench-<date>-<sections>.md.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from scripts import bench_webhooks  # noqa: E402
from scripts.bench_stack import BenchStack  # noqa: E402
from scripts.loadgen import OpenLoop, Throughput, run_constant_rate, wrk  # noqa: E402

QUICK = os.environ.get("BENCH_QUICK") == "1"
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "1" if QUICK else "3"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "2" if QUICK else "8"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "16"))
CREATE_RPS = float(os.environ.get("BENCH_CREATE_RPS", "20" if QUICK else "250"))
LATENCY_SECONDS = float(os.environ.get("BENCH_LATENCY_SECONDS", "3" if QUICK else "20"))
REPORTS = Path(os.environ.get("BENCH_REPORTS_DIR", ROOT / "reports"))
SECTIONS = ("telemetry", "create", "latency", "webhooks")
ONLY = [name for name in os.environ.get("BENCH_ONLY", "").split(",") if name]


@dataclass
class Series:
    name: str
    runs: list[Throughput] = field(default_factory=list)

    def median(self, attribute: str) -> float:
        return statistics.median(getattr(run, attribute) for run in self.runs)


def _ratio_row(series: Series, baseline: Series) -> str:
    ratios = [run.rps / base.rps for run, base in zip(series.runs, baseline.runs, strict=True)]
    return (
        f"| {series.name} | {', '.join(f'{run.rps:,.0f}' for run in series.runs)} "
        f"| {series.median('rps'):,.0f} | {statistics.median(ratios):.0%} "
        f"| {series.median('p50_ms'):.2f} | {series.median('p99_ms'):.2f} "
        f"| {sum(run.errors for run in series.runs)} |"
    )


def _table(title: str, baseline: Series, others: list[Series]) -> list[str]:
    return [
        f"### {title}",
        "",
        f"| configuration | rounds req/s | median req/s | vs {baseline.name} (paired median) "
        "| p50 ms | p99 ms | errors |",
        "|---|---|---|---|---|---|---|",
        *(_ratio_row(series, baseline) for series in [baseline, *others]),
        "",
    ]


def telemetry_pairs(stack: BenchStack) -> list[str]:
    configs: list[tuple[Series, dict[str, str]]] = [
        (Series("telemetry off"), {"TELEMETRY_ENABLED": "false"}),
        (Series("on, 100 % traces"), stack.otlp_env()),
        (Series("on, 10 % traces"), {**stack.otlp_env(), "OTEL_TRACES_SAMPLER_ARG": "0.1"}),
        (
            Series("usual stack: contrib instrumentation, 100 %"),
            {**stack.otlp_env(), "TELEMETRY_HTTP_MIDDLEWARE": "contrib"},
        ),
        (Series("on, 100 %, collector black-holed"), stack.blackhole_env()),
    ]
    if QUICK:  # a smoke run of the tooling: one configuration of each kind is enough
        configs = [configs[0], configs[2], configs[4]]
    for round_number in range(1, ROUNDS + 1):
        for series, env in configs:
            with stack.api(env) as process:
                api = process.url
                wrk(f"{api}/api/v1/info", 1, 4)  # warm up
                result = wrk(f"{api}/api/v1/info", SECONDS, CONNECTIONS)
            series.runs.append(result)
            _progress(round_number, series.name, result)
    off, *others = (series for series, _ in configs)
    return _table("Telemetry cost, trivial endpoint (GET /api/v1/info)", off, others)


def create_pairs(stack: BenchStack) -> list[str]:
    trivial, create = Series("GET /api/v1/info"), Series("POST /api/v1/mandates")
    with stack.api(stack.otlp_env()) as process:
        api = process.url
        body = json.dumps({"vc_jwt": stack.token()}).encode()
        headers = {"Content-Type": "application/json", "X-API-Key": stack.api_key}
        wrk(f"{api}/api/v1/mandates", 2, 4, method="POST", body=body, headers=headers)
        for round_number in range(1, ROUNDS + 1):
            result = wrk(
                f"{api}/api/v1/mandates",
                SECONDS,
                CONNECTIONS,
                method="POST",
                body=body,
                headers=headers,
            )
            create.runs.append(result)
            _progress(round_number, create.name, result)
            result = wrk(f"{api}/api/v1/info", SECONDS, CONNECTIONS)
            trivial.runs.append(result)
            _progress(round_number, trivial.name, result)
    return _table(
        "Create-mandate vs the trivial endpoint (same api process, telemetry on)", trivial, [create]
    )


def _create_request(api: str, body: bytes, api_key: str) -> Callable[[aiohttp.ClientSession], Any]:
    async def request(session: aiohttp.ClientSession) -> int:
        async with session.post(
            f"{api}/api/v1/mandates",
            data=body,
            headers={"Content-Type": "application/json", "X-API-Key": api_key},
        ) as response:
            await response.read()
            return response.status

    return request


def create_latency(stack: BenchStack) -> tuple[OpenLoop, list[str]]:
    with stack.api(stack.otlp_env()) as process:
        api = process.url
        body = json.dumps({"vc_jwt": stack.token()}).encode()
        outcome = run_constant_rate(
            _create_request(api, body, stack.api_key), CREATE_RPS, LATENCY_SECONDS
        )
    summary = outcome.summary()
    return outcome, [
        f"### Create-mandate latency at {CREATE_RPS:.0f} req/s "
        f"(constant rate, {LATENCY_SECONDS:.0f} s)",
        "",
        "| target req/s | achieved req/s | p50 ms | p95 ms | p99 ms | max ms | errors |",
        "|---|---|---|---|---|---|---|",
        f"| {summary['target_rps']:.0f} | {summary['achieved_rps']} | {summary['p50_ms']} "
        f"| {summary['p95_ms']} | {summary['p99_ms']} | {summary['max_ms']} "
        f"| {summary['errors'] or 0} |",
        "",
    ]


def _progress(round_number: int, name: str, result: Throughput) -> None:
    print(
        f"round {round_number}  {name:<46} {result.rps:>8,.0f} req/s  "
        f"p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:7.2f} ms",
        flush=True,
    )


def _machine() -> str:
    return f"{os.cpu_count()} cores, {socket.gethostname()}, Python {sys.version.split()[0]}"


def _wanted(section: str) -> bool:
    return not ONLY or section in ONLY


def _write_figures(path: Path, figures: dict[str, float], started: datetime) -> None:
    """Merge this run's figures into the day's JSON (a partial run keeps the other keys)."""
    found: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    found.update(figures)
    found["meta"] = {"machine": _machine(), "started": started.isoformat(timespec="seconds")}
    path.write_text(json.dumps(found, indent=2, sort_keys=True) + "\n")


def main() -> None:
    unknown = set(ONLY) - set(SECTIONS)
    if unknown:
        sys.exit(f"BENCH_ONLY: unknown sections {sorted(unknown)}; known: {', '.join(SECTIONS)}")
    started = datetime.now(UTC)
    figures: dict[str, float] = {}
    lines: list[str] = []
    with BenchStack() as stack:
        if _wanted("telemetry"):
            lines += telemetry_pairs(stack)
        if _wanted("create"):
            lines += create_pairs(stack)
        if _wanted("latency"):
            lines += create_latency(stack)[1]
        if _wanted("webhooks"):
            lines += bench_webhooks.run(stack, figures)
    header = [
        f"# Benchmark {started.isoformat(timespec='seconds')}",
        "",
        f"Machine: {_machine()}. Load generators on the same cores as the services. wrk -t1 "
        f"-c{CONNECTIONS} -d{SECONDS}s per throughput run, {ROUNDS} alternating rounds; "
        "latency from a constant-rate open-model generator (scripts/loadgen.py). All telemetry "
        "on means 100 % traces with batched OTLP export, the guide's metrics and a JSON "
        "access-log line (also shipped over OTLP) per request.",
        "",
    ]
    report = "\n".join(header + lines)
    print("\n" + report)
    REPORTS.mkdir(exist_ok=True)
    name = "bench-quick" if QUICK else f"bench-{started:%Y-%m-%d}"
    path = REPORTS / (f"{name}-{'-'.join(ONLY)}.md" if ONLY else f"{name}.md")
    path.write_text(report + "\n")
    _write_figures(REPORTS / f"{name}.json", figures, started)
    print(f"report: {path}, figures: {REPORTS / f'{name}.json'}")


if __name__ == "__main__":
    main()
