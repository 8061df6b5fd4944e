"""`make bench`: paired, alternating wrk runs of one api process per configuration.

Configurations run in rounds (A B C, A B C, ...) so drift on a shared machine hits all of them
alike; the report gives each round's figures, the medians, and each configuration's throughput
as a share of telemetry-off measured in the same round.

    telemetry-off      TELEMETRY_ENABLED=false (no middleware, no spans, no access log)
    telemetry-on       100 % traces, metrics, one JSON access-log line, OTLP to a live receiver
    collector-blackhole the same with the OTLP endpoint accepting nothing and answering nothing

Environment knobs: BENCH_ROUNDS (3), BENCH_SECONDS (8), BENCH_CONNECTIONS (16).
"""

from __future__ import annotations

import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
REPORTS = ROOT / "reports"
PATH = "/api/v1/info"
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "8"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "16"))


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


@dataclass
class Config:
    name: str
    env: dict[str, str]
    results: list[Result] = field(default_factory=list)


class _Discard(BaseHTTPRequestHandler):
    """An OTLP endpoint that accepts and drops everything, costing the machine little."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.3):
                return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"api did not start on port {port}")


_LATENCY = re.compile(r"^\s+(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def parse_wrk(output: str) -> Result:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    latency = {p: float(v) * _UNITS[u] for p, v, u in _LATENCY.findall(output)}
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses:\s+(\d+)", output))
    socket_errors = re.search(r"Socket errors:.*?timeout (\d+)", output)
    if socket_errors:
        errors += int(socket_errors.group(1))
    return Result(rps, latency.get("50", float("nan")), latency.get("99", float("nan")), errors)


def run_once(config: Config) -> Result:
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "SENTRY_"))},
        "ENVIRONMENT": "staging",
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "json",
        "API_PORT": str(port),
        "API_TOKEN_SIGNING_KEY": "bench-only-signing-key-0123456789",
        "API_WEBHOOK_ENCRYPTION_KEY": "YmVuY2gtb25seS13ZWJob29rLWtleS0wMDAwMDAwMDA=",
        **config.env,
    }
    with open(os.devnull, "wb") as devnull:
        process = subprocess.Popen(
            [sys.executable, "-m", "mandate_vault_api"], env=env, stdout=devnull, stderr=devnull
        )
    try:
        _wait_healthy(port)
        url = f"http://127.0.0.1:{port}{PATH}"
        subprocess.run(["wrk", "-t1", "-c4", "-d2s", url], capture_output=True, check=True)
        wrk = subprocess.run(
            ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{SECONDS}s", "--latency", url],
            capture_output=True,
            text=True,
            check=True,
        )
        return parse_wrk(wrk.stdout)
    finally:
        process.terminate()
        process.wait(20)


def _table(configs: list[Config]) -> list[str]:
    off = configs[0]
    rows = [
        "| configuration | rounds req/s | median req/s | vs off (paired median) "
        "| p50 ms | p99 ms | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for config in configs:
        rps = [r.rps for r in config.results]
        ratios = [r.rps / o.rps for r, o in zip(config.results, off.results, strict=True)]
        rows.append(
            f"| {config.name} | {', '.join(f'{x:,.0f}' for x in rps)} "
            f"| {statistics.median(rps):,.0f} | {statistics.median(ratios):.0%} "
            f"| {statistics.median(r.p50_ms for r in config.results):.2f} "
            f"| {statistics.median(r.p99_ms for r in config.results):.2f} "
            f"| {sum(r.errors for r in config.results)} |"
        )
    return rows


def main() -> None:
    sink = ThreadingHTTPServer(("127.0.0.1", 0), _Discard)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    blackhole = socket.socket()
    blackhole.bind(("127.0.0.1", 0))
    blackhole.listen(1)
    configs = [
        Config("telemetry-off", {"TELEMETRY_ENABLED": "false"}),
        Config(
            "telemetry-on (100 % traces, OTLP live)",
            {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink.server_address[1]}"},
        ),
        Config(
            "telemetry-on, 10 % trace sampling",
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink.server_address[1]}",
                "OTEL_TRACES_SAMPLER_ARG": "0.1",
            },
        ),
        Config(
            "contrib FastAPI instrumentation (100 %)",
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink.server_address[1]}",
                "TELEMETRY_HTTP_MIDDLEWARE": "contrib",
            },
        ),
        Config(
            "telemetry-on, collector black-holed",
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{blackhole.getsockname()[1]}",
                "OTEL_EXPORTER_OTLP_TIMEOUT": "2",
            },
        ),
    ]
    for round_number in range(1, ROUNDS + 1):
        for config in configs:
            result = run_once(config)
            config.results.append(result)
            print(
                f"round {round_number} {config.name:<42} {result.rps:>8,.0f} req/s "
                f"p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:6.2f} ms",
                flush=True,
            )
    rows = _table(configs)
    print("\n" + "\n".join(rows))
    REPORTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    report = REPORTS / f"bench-{stamp}.md"
    header = [
        f"# Benchmark {datetime.now(UTC).isoformat(timespec='seconds')}",
        "",
        f"`GET {PATH}` on one api process (uvloop + httptools); wrk -t1 -c{CONNECTIONS} "
        f"-d{SECONDS}s per run, {ROUNDS} alternating rounds, on the same machine as the load.",
        "",
    ]
    report.write_text("\n".join(header + rows) + "\n")
    print(f"\nreport: {report.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
