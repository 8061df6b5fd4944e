"""`make bench`: paired benchmarks on real parts; prints a table, writes reports/bench-<date>.md.

Pairs run alternately in one invocation (A B A B ...), so drift on a shared machine hits both
sides; each pair reports its rounds, the medians and the ratio taken pair by pair.

1. Telemetry cost on a trivial endpoint (`GET /api/v1/info`, one api process per run, wrk):
   off vs on at 100 % and 10 % trace sampling; the contrib FastAPI instrumentation (the usual
   stack) for comparison; and the collector reachable vs black-holed.
2. Create-mandate (scripts/bench_create.py): closed-loop throughput against the telemetry-off
   trivial endpoint, CPU per create per process, and an open-loop overload sweep.
3. Webhook end to end (mandate accepted -> subscriber received) at a constant rate.

Knobs: BENCH_ROUNDS (3), BENCH_SECONDS (8), BENCH_CONNECTIONS (16), BENCH_WEBHOOK_RPS (100),
BENCH_LATENCY_SECONDS (20), BENCH_STEP_SECONDS (15), BENCH_QUICK=1 (seconds-long smoke run),
BENCH_ONLY=telemetry,create,webhook (only those sections; the markdown report gets their names
as a suffix, their keys are merged into reports/bench-<date>.json).
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from scripts import bench_create  # noqa: E402
from scripts.bench_stack import BenchStack  # noqa: E402
from scripts.loadgen import Throughput, run_constant_rate, wrk  # noqa: E402

QUICK = os.environ.get("BENCH_QUICK") == "1"
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "1" if QUICK else "3"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "2" if QUICK else "8"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "16"))
WEBHOOK_RPS = float(os.environ.get("BENCH_WEBHOOK_RPS", "10" if QUICK else "100"))
LATENCY_SECONDS = float(os.environ.get("BENCH_LATENCY_SECONDS", "3" if QUICK else "20"))
REPORTS = Path(os.environ.get("BENCH_REPORTS_DIR", ROOT / "reports"))


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


class _Arrivals(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: dict[str, float] = {}

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        _Arrivals.seen[json.loads(body)["data"]["id"]] = time.monotonic()
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


def webhook_latency(stack: BenchStack) -> list[str]:
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _Arrivals)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    sent: dict[str, float] = {}
    with stack.api(stack.otlp_env()) as process, stack.worker(stack.otlp_env()):
        api = process.url
        stack.subscribe(api, f"http://127.0.0.1:{receiver.server_address[1]}/hook")
        body = json.dumps({"vc_jwt": stack.token()}).encode()

        async def request(session: aiohttp.ClientSession) -> int:
            scheduled = time.monotonic()
            async with session.post(
                f"{api}/api/v1/mandates",
                data=body,
                headers={"Content-Type": "application/json", "X-API-Key": stack.api_key},
            ) as response:
                created = await response.json()
                sent[created["id"]] = scheduled
                return response.status

        outcome = run_constant_rate(request, WEBHOOK_RPS, LATENCY_SECONDS)
        deadline = time.monotonic() + 30
        while len(_Arrivals.seen.keys() & sent.keys()) < len(sent) and time.monotonic() < deadline:
            time.sleep(0.2)
    receiver.shutdown()
    latencies = sorted((_Arrivals.seen[i] - sent[i]) * 1000 for i in sent if i in _Arrivals.seen)
    lost = len(sent) - len(latencies)

    def pct(q: float) -> str:
        return (
            f"{latencies[min(int(q * len(latencies)), len(latencies) - 1)]:.1f}"
            if latencies
            else "n/a"
        )

    return [
        f"### Webhook end to end at {WEBHOOK_RPS:.0f} mandates/s ({LATENCY_SECONDS:.0f} s, "
        "mandate accepted -> subscriber received)",
        "",
        "| mandates | delivered | p50 ms | p95 ms | p99 ms | max ms | create errors |",
        "|---|---|---|---|---|---|---|",
        f"| {len(sent)} | {len(latencies)} (lost {lost}) | {pct(0.5)} | {pct(0.95)} | {pct(0.99)} "
        f"| {pct(1.0)} | {sum(outcome.errors.values())} |",
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


def _selected(section: str) -> bool:
    """BENCH_ONLY=create,webhook runs only those sections (default: all)."""
    only = {name.strip() for name in os.environ.get("BENCH_ONLY", "").split(",") if name.strip()}
    return not only or section in only


def main() -> None:
    started = datetime.now(UTC)
    REPORTS.mkdir(exist_ok=True)
    figures: dict[str, Any] = {}
    lines: list[str] = []
    with BenchStack() as stack:
        if _selected("telemetry"):
            lines += telemetry_pairs(stack)
        if _selected("create"):  # create.* and overload.* keys (scripts/bench_create.py)
            create_lines, create_figures = bench_create.section(stack, REPORTS, _stem(started))
            lines += create_lines
            figures |= create_figures
        if _selected("webhook"):
            lines += webhook_latency(stack)
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
    only = os.environ.get("BENCH_ONLY", "").replace(",", "-")
    name = _stem(started) + (f"-{only}" if only else "")
    path = REPORTS / f"{name}.md"
    path.write_text(report + "\n")
    bench_create.merge_json(REPORTS / f"{_stem(started)}.json", figures)
    print(f"report: {path}, figures: {REPORTS / _stem(started)}.json")


def _stem(started: datetime) -> str:
    return "bench-quick" if QUICK else f"bench-{started:%Y-%m-%d}"


if __name__ == "__main__":
    main()
