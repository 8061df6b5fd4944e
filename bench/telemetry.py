"""Telemetry figures for `make bench` (``BENCH_ONLY=telemetry``): what telemetry costs, and whether
the fast pipeline still earns its keep against the OpenTelemetry SDK's.

1. Trivial endpoint (``GET /api/v1/info``, wrk), configurations run alternately round after
   round, each beside a telemetry-off twin: everything on (100 % traces exported over
   OTLP, the guide's and the semantic-convention metrics, exemplars, a JSON access line per
   request shipped over OTLP) in the fast and the SDK pipeline; production defaults
   (``ENVIRONMENT=production``: 10 % traces, WARNING logs); everything on without exemplars
   (``OTEL_METRICS_EXEMPLAR_FILTER=always_off``), without semantic-convention metrics
   (``TELEMETRY_SEMCONV_METRICS=false``); and the collector black-holed.
2. Create-mandate (api + jwt-verifier on PostgreSQL, production defaults, OTLP export): the fast
   and the SDK pipeline alternately, throughput and CPU per create.

Each configuration's api process runs at the same time as a telemetry-off api process, both
under their own wrk, so the two share whatever the machine gives in those seconds: on this VM
the speed of one configuration drifts by 20-30 % within minutes, and runs taken one after the
other gave ratios 0.49-0.79 for the same pair of configurations, against 0.68-0.81 side by
side. A ratio to off is one configuration's throughput over its twin's, run by run; the median
over rounds is reported (and the same from CPU per request, which does not depend on the share
of the cores each process got). Keys under
``telemetry.``: ``full_ratio`` (all on / off, goal >= 0.38), ``production_ratio`` (goal >= 0.60),
``fast_vs_sdk.trivial`` and ``fast_vs_sdk.create`` (fast / SDK throughput: the fast pipeline
stays where one is >= 1.10), ``exemplar_cost`` and ``semconv_cost`` (share of all-on throughput
each costs), plus the medians behind them.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from bench import create as bench_create
from bench.parts import Bench
from mandate_vault_harness.load import Throughput, wrk
from mandate_vault_harness.services import ServiceProcess

QUICK = os.environ.get("BENCH_QUICK") == "1"
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "1" if QUICK else "3"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "2" if QUICK else "8"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "16"))
OFF = {"TELEMETRY_ENABLED": "false"}
FULL = {"LOG_LEVEL": "INFO"}  # development defaults: 100 % traces; INFO access lines
PRODUCTION = {
    "ENVIRONMENT": "production",
    "LOG_LEVEL": "WARNING",
    "API_TOKEN_SIGNING_KEY": "bench-signing-key-0123456789abcdef",
    "API_WEBHOOK_ENCRYPTION_KEY": "YmVuY2gtb25seS13ZWJob29rLWVuY3J5cHRpb24ta2U=",
}


LABELS = {
    "full": "all on, fast pipeline",
    "full_sdk": "all on, SDK pipeline",
    "production": "production defaults (10 % traces, WARNING logs)",
    "no_exemplars": "all on, no exemplars",
    "no_semconv": "all on, no semantic-convention metrics",
    "blackholed": "all on, collector black-holed",
}


@dataclass
class Run:
    throughput: Throughput
    cpu_us: float  # api CPU per request, from /proc


@dataclass
class Series:
    name: str
    env: dict[str, str]
    runs: list[Run] = field(default_factory=list)
    twins: list[Run] = field(default_factory=list)  # the telemetry-off api beside each run

    def median(self, attribute: str = "rps") -> float:
        return float(statistics.median(getattr(run.throughput, attribute) for run in self.runs))

    def cpu_median(self) -> float:
        return float(statistics.median(run.cpu_us for run in self.runs))

    def ratios(self) -> list[float]:
        """Throughput over the twin's, run by run."""
        return [
            run.throughput.rps / twin.throughput.rps
            for run, twin in zip(self.runs, self.twins, strict=True)
        ]

    def vs_off(self) -> float:
        return statistics.median(self.ratios())

    def cpu_vs_off(self) -> float:
        """The twin's CPU per request over this one's: the share of throughput this
        configuration would keep on a machine of its own."""
        pairs = zip(self.runs, self.twins, strict=True)
        return statistics.median(twin.cpu_us / run.cpu_us for run, twin in pairs)

    def relative(self, other: Series) -> float:
        """Median over rounds of this series' ratio to off over `other`'s."""
        pairs = zip(self.ratios(), other.ratios(), strict=True)
        return statistics.median(mine / theirs for mine, theirs in pairs)


def _trivial_series(stack: Bench) -> dict[str, Series]:
    otlp = stack.otlp_env()
    configs = {
        "full": {**FULL, **otlp},
        "full_sdk": {**FULL, **otlp, "TELEMETRY_PIPELINE": "sdk"},
        "production": {**PRODUCTION, **otlp},
        "no_exemplars": {**FULL, **otlp, "OTEL_METRICS_EXEMPLAR_FILTER": "always_off"},
        "no_semconv": {**FULL, **otlp, "TELEMETRY_SEMCONV_METRICS": "false"},
        "blackholed": {**FULL, **stack.blackhole_env()},
    }
    if QUICK:
        configs = {k: configs[k] for k in ("full", "full_sdk", "production")}
    return {name: Series(name, env) for name, env in configs.items()}


def trivial_rounds(stack: Bench) -> dict[str, Series]:
    series = _trivial_series(stack)
    for round_number in range(1, ROUNDS + 1):
        for one in series.values():
            with stack.api(one.env) as process, stack.api(OFF) as twin:
                run, twin_run = side_by_side(process, twin)
            one.runs.append(run)
            one.twins.append(twin_run)
            _progress(round_number, one.name, run.throughput, twin_run.throughput)
    return series


def side_by_side(*processes: ServiceProcess) -> list[Run]:
    """wrk against every process at once, each from its own thread: their runs, in order."""
    for process in processes:
        wrk(f"{process.url}/api/v1/info", 1, 4)  # warm up
    with ThreadPoolExecutor(len(processes)) as pool:
        return list(pool.map(_measured, processes))


def _measured(process: ServiceProcess) -> Run:
    before = process.cpu_seconds()
    throughput = wrk(f"{process.url}/api/v1/info", SECONDS, CONNECTIONS)
    used = process.cpu_seconds() - before
    return Run(throughput, used * 1e6 / max(throughput.rps * SECONDS, 1))


def create_rounds(stack: Bench) -> dict[str, list[bench_create.CreateRun]]:
    runs: dict[str, list[bench_create.CreateRun]] = {"fast": [], "sdk": []}
    for round_number in range(1, ROUNDS + 1):
        for pipeline, found in runs.items():
            env = {**PRODUCTION, "TELEMETRY_PIPELINE": pipeline}
            with bench_create.services(stack, env) as (api, verifier):
                found.append(bench_create.closed_loop(stack, api, verifier, SECONDS))
            _progress(round_number, f"create, {pipeline}", found[-1].throughput)
    return runs


def _progress(
    round_number: int, name: str, result: Throughput, twin: Throughput | None = None
) -> None:
    beside = f"  (off beside it: {twin.rps:,.0f} req/s)" if twin is not None else ""
    print(
        f"round {round_number}  {name:<24} {result.rps:>8,.0f} req/s  "
        f"p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:7.2f} ms{beside}",
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
    full, sdk = series["full"], series["full_sdk"]
    twins = [twin for one in series.values() for twin in one.twins]
    rounded: Callable[[float], float] = lambda x: round(x, 4)  # noqa: E731
    figures: dict[str, Any] = {
        "full_ratio": rounded(full.vs_off()),
        "production_ratio": rounded(series["production"].vs_off()),
        "fast_vs_sdk": {
            "trivial": rounded(full.relative(sdk)),
            "create": rounded(_create_ratio(creates)),
        },
        "sdk_full_ratio": rounded(sdk.vs_off()),
        # The same shares from CPU per request: independent of the share of cores each got.
        "by_cpu": {
            "full_ratio": rounded(full.cpu_vs_off()),
            "production_ratio": rounded(series["production"].cpu_vs_off()),
            "fast_vs_sdk_trivial": rounded(full.cpu_vs_off() / sdk.cpu_vs_off()),
        },
        "cpu_us_per_request": {
            "off": round(statistics.median(twin.cpu_us for twin in twins), 1),
            **{name: round(one.cpu_median(), 1) for name, one in series.items()},
        },
        "rps": {
            "off": round(statistics.median(twin.throughput.rps for twin in twins), 1),
            **{name: round(one.median(), 1) for name, one in series.items()},
        },
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
        figures["exemplar_cost"] = rounded(1 - full.relative(series["no_exemplars"]))
        figures["semconv_cost"] = rounded(1 - full.relative(series["no_semconv"]))
        figures["blackholed_ratio"] = rounded(series["blackholed"].vs_off())
    return figures


def _row(one: Series) -> str:
    rounds = ", ".join(f"{run.throughput.rps:,.0f}" for run in one.runs)
    beside = ", ".join(f"{twin.throughput.rps:,.0f}" for twin in one.twins)
    ratios = ", ".join(f"{ratio:.0%}" for ratio in one.ratios())
    errors = sum(run.throughput.errors for run in one.runs)
    return (
        f"| {LABELS[one.name]} | {rounds} | {beside} | {ratios} | **{one.vs_off():.0%}** "
        f"| {one.cpu_vs_off():.0%} | {one.median('p50_ms'):.2f} | {one.median('p99_ms'):.2f} "
        f"| {errors} | {one.cpu_median():.0f} |"
    )


def markdown(series: dict[str, Series], figures: dict[str, Any]) -> list[str]:
    create = figures["create"]
    return [
        "### Telemetry cost, trivial endpoint (GET /api/v1/info)",
        "",
        "Each run beside a telemetry-off api, both under wrk at once; "
        f"off beside them: median {figures['rps']['off']:,.0f} req/s, "
        f"{figures['cpu_us_per_request']['off']:.0f} us of api CPU a request.",
        "",
        "| configuration | rounds req/s | off beside it, req/s | ratio by round "
        "| vs off (median) | vs off by CPU | p50 ms | p99 ms | errors | api CPU us/request |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *(_row(one) for one in series.values()),
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
