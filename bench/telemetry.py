"""Telemetry figures for `make bench` (``BENCH_ONLY=telemetry``): what telemetry costs, and whether
the fast pipeline still earns its keep against the OpenTelemetry SDK's.

1. Trivial endpoint (``GET /api/v1/info``, one api process per run, wrk), configurations run
   alternately round after round: telemetry off; everything on (100 % traces exported over
   OTLP, the guide's and the semantic-convention metrics, exemplars, a JSON access line per
   request shipped over OTLP) in the fast and the SDK pipeline; production defaults
   (``ENVIRONMENT=production``: 10 % traces, WARNING logs); everything on without exemplars
   (``OTEL_METRICS_EXEMPLAR_FILTER=always_off``), without semantic-convention metrics
   (``TELEMETRY_SEMCONV_METRICS=false``); and the collector black-holed.
2. Create-mandate (api + jwt-verifier on PostgreSQL, production defaults, OTLP export): the fast
   and the SDK pipeline alternately, throughput and CPU per create.

Ratios are taken pair by pair (same round) and their median reported. Keys under
``telemetry.``: ``full_ratio`` (all on / off, goal >= 0.38), ``production_ratio`` (goal >= 0.60),
``fast_vs_sdk.trivial`` and ``fast_vs_sdk.create`` (fast / SDK throughput: the fast pipeline
stays where one is >= 1.10), ``exemplar_cost`` and ``semconv_cost`` (share of all-on throughput
each costs), plus the medians behind them.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench import create as bench_create
from bench.parts import Bench
from mandate_vault_harness.load import Throughput, wrk

QUICK = os.environ.get("BENCH_QUICK") == "1"
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "1" if QUICK else "3"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "2" if QUICK else "8"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "16"))
FULL = {"LOG_LEVEL": "INFO"}  # development defaults: 100 % traces; INFO access lines
PRODUCTION = {
    "ENVIRONMENT": "production",
    "LOG_LEVEL": "WARNING",
    "API_TOKEN_SIGNING_KEY": "bench-signing-key-0123456789abcdef",
    "API_WEBHOOK_ENCRYPTION_KEY": "YmVuY2gtb25seS13ZWJob29rLWVuY3J5cHRpb24ta2U=",
}


LABELS = {
    "off": "telemetry off",
    "full": "all on, fast pipeline",
    "full_sdk": "all on, SDK pipeline",
    "production": "production defaults (10 % traces, WARNING logs)",
    "no_exemplars": "all on, no exemplars",
    "no_semconv": "all on, no semantic-convention metrics",
    "blackholed": "all on, collector black-holed",
}


@dataclass
class Series:
    name: str
    env: dict[str, str]
    runs: list[Throughput] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)  # api CPU per request, from /proc

    def median(self, attribute: str = "rps") -> float:
        return float(statistics.median(getattr(run, attribute) for run in self.runs))

    def cpu_paired(self, other: Series) -> float:
        """Median over rounds of `other`'s CPU per request over this series': the share of
        throughput this configuration would keep on a machine of its own."""
        pairs = zip(self.cpu_us, other.cpu_us, strict=True)
        return statistics.median(theirs / mine for mine, theirs in pairs)

    def paired(self, other: Series) -> float:
        """Median over rounds of this series' throughput over `other`'s."""
        pairs = zip(self.runs, other.runs, strict=True)
        return statistics.median(mine.rps / theirs.rps for mine, theirs in pairs)


def _trivial_series(stack: Bench) -> dict[str, Series]:
    otlp = stack.otlp_env()
    configs = {
        "off": {"TELEMETRY_ENABLED": "false"},
        "full": {**FULL, **otlp},
        "full_sdk": {**FULL, **otlp, "TELEMETRY_PIPELINE": "sdk"},
        "production": {**PRODUCTION, **otlp},
        "no_exemplars": {**FULL, **otlp, "OTEL_METRICS_EXEMPLAR_FILTER": "always_off"},
        "no_semconv": {**FULL, **otlp, "TELEMETRY_SEMCONV_METRICS": "false"},
        "blackholed": {**FULL, **stack.blackhole_env()},
    }
    if QUICK:
        configs = {k: configs[k] for k in ("off", "full", "full_sdk", "production")}
    return {name: Series(name, env) for name, env in configs.items()}


def trivial_rounds(stack: Bench) -> dict[str, Series]:
    series = _trivial_series(stack)
    for round_number in range(1, ROUNDS + 1):
        for one in series.values():
            with stack.api(one.env) as process:
                wrk(f"{process.url}/api/v1/info", 1, 4)  # warm up
                before = process.cpu_seconds()
                one.runs.append(wrk(f"{process.url}/api/v1/info", SECONDS, CONNECTIONS))
                used = process.cpu_seconds() - before
                one.cpu_us.append(used * 1e6 / max(one.runs[-1].rps * SECONDS, 1))
            _progress(round_number, one.name, one.runs[-1])
    return series


def create_rounds(stack: Bench) -> dict[str, list[bench_create.CreateRun]]:
    runs: dict[str, list[bench_create.CreateRun]] = {"fast": [], "sdk": []}
    for round_number in range(1, ROUNDS + 1):
        for pipeline, found in runs.items():
            env = {**PRODUCTION, "TELEMETRY_PIPELINE": pipeline}
            with bench_create.services(stack, env) as (api, verifier):
                found.append(bench_create.closed_loop(stack, api, verifier, SECONDS))
            _progress(round_number, f"create, {pipeline}", found[-1].throughput)
    return runs


def _progress(round_number: int, name: str, result: Throughput) -> None:
    print(
        f"round {round_number}  {name:<24} {result.rps:>8,.0f} req/s  "
        f"p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:7.2f} ms",
        flush=True,
    )


def _create_ratio(runs: dict[str, list[bench_create.CreateRun]]) -> float:
    pairs = zip(runs["fast"], runs["sdk"], strict=True)
    return statistics.median(f.throughput.rps / s.throughput.rps for f, s in pairs)


def _cpu(runs: list[bench_create.CreateRun], process: str) -> float:
    return round(statistics.median(run.cpu_ms[process] for run in runs), 3)


def figures_of(
    series: dict[str, Series], creates: dict[str, list[bench_create.CreateRun]]
) -> dict[str, Any]:
    off, full = series["off"], series["full"]
    rounded: Callable[[float], float] = lambda x: round(x, 4)  # noqa: E731
    figures: dict[str, Any] = {
        "full_ratio": rounded(full.paired(off)),
        "production_ratio": rounded(series["production"].paired(off)),
        "fast_vs_sdk": {
            "trivial": rounded(full.paired(series["full_sdk"])),
            "create": rounded(_create_ratio(creates)),
        },
        "sdk_full_ratio": rounded(series["full_sdk"].paired(off)),
        # The same shares from CPU per request: steadier than throughput on a shared machine.
        "by_cpu": {
            "full_ratio": rounded(full.cpu_paired(off)),
            "production_ratio": rounded(series["production"].cpu_paired(off)),
            "fast_vs_sdk_trivial": rounded(full.cpu_paired(series["full_sdk"])),
        },
        "cpu_us_per_request": {
            name: round(statistics.median(one.cpu_us), 1) for name, one in series.items()
        },
        "rps": {name: round(one.median(), 1) for name, one in series.items()},
        "create": {
            pipeline: {
                "rps": round(statistics.median(r.throughput.rps for r in runs), 1),
                "cpu_ms_api": _cpu(runs, "api"),
                "cpu_ms_total": _cpu(runs, "total"),
            }
            for pipeline, runs in creates.items()
        },
    }
    if "no_exemplars" in series:
        figures["exemplar_cost"] = rounded(1 - full.paired(series["no_exemplars"]))
        figures["semconv_cost"] = rounded(1 - full.paired(series["no_semconv"]))
        figures["blackholed_ratio"] = rounded(series["blackholed"].paired(off))
    return figures


def markdown(series: dict[str, Series], figures: dict[str, Any]) -> list[str]:
    off = series["off"]
    rows = [
        f"| {LABELS[one.name]} | {', '.join(f'{run.rps:,.0f}' for run in one.runs)} "
        f"| {one.median():,.0f} | {one.paired(off):.0%} | {one.median('p50_ms'):.2f} "
        f"| {one.median('p99_ms'):.2f} | {sum(run.errors for run in one.runs)} "
        f"| {statistics.median(one.cpu_us):.0f} |"
        for one in series.values()
    ]
    create = figures["create"]
    return [
        "### Telemetry cost, trivial endpoint (GET /api/v1/info)",
        "",
        "| configuration | rounds req/s | median req/s | vs off (paired median) | p50 ms "
        "| p99 ms | errors | api CPU us/request |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "### Fast pipeline vs SDK pipeline",
        "",
        "| figure | value |",
        "|---|---|",
        f"| trivial endpoint, all on: fast / SDK | {figures['fast_vs_sdk']['trivial']:.2f} |",
        f"| create-mandate, production: fast / SDK | {figures['fast_vs_sdk']['create']:.2f} |",
        f"| create req/s fast, SDK | {create['fast']['rps']:,.0f}, {create['sdk']['rps']:,.0f} |",
        f"| api CPU ms per create fast, SDK | {create['fast']['cpu_ms_api']}, "
        f"{create['sdk']['cpu_ms_api']} |",
        "",
    ]


def section(stack: Bench) -> tuple[list[str], dict[str, Any]]:
    series = trivial_rounds(stack)
    creates = create_rounds(stack)
    figures = figures_of(series, creates)
    return markdown(series, figures), {"telemetry": figures}
