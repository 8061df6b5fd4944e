"""Create-mandate figures for `make bench`: throughput and CPU per create, and overload.

    BENCH_ONLY=create make bench          # this section alone (also: python -m bench.run)
    python -m bench.create measure [--config production|full] [--rounds N]
    python -m bench.create ab --base DIR     # A/B CPU per create against another tree
    python -m bench.create sweep [--split] [--capacity R]  # one overload sweep alone
    python -m bench.create profile --format flamegraph --out docs/perf/after

The section (`section`) measures, in one run on real parts (PostgreSQL, the broker, one
uvicorn process per service, wrk and the load generator on the same cores):

1. closed loop: wrk -t1 -c16 on ``GET /api/v1/info`` of an api with telemetry off, alternating
   with wrk on ``POST /api/v1/mandates`` of an api + jwt-verifier at production defaults
   (``ENVIRONMENT=production``: 10 % traces, WARNING logs) with every signal exported over
   OTLP; CPU per create of each process from /proc (api, jwt-verifier, the PostgreSQL backends
   serving the database); and the same create with everything at 100 % (traces, INFO logs);
2. overload: an open-loop sweep (the harness's `load.run_open_loop`) from 25 % to 200 % of
   the closed-loop capacity of the sweep's own processes, measured just before it, then back
   to 50 %: goodput, admitted p50/p99, refusals and their p99 per step, and how long latency
   takes to be normal again; then rounds of a closed loop followed at once by twice what it
   measured, whose medians are the ``at_200pct`` figures (capacity and overload seconds
   apart: the machine's speed drifts too much for a ratio across minutes). Twice: with the
   generator sharing both cores with the system (the ``overload.*`` keys, plotted to
   ``reports/bench-<date>-overload.png``), and with the system on one core and the generator
   on the other (``overload.split_cores.*``): there the generator's own CPU does not come out
   of the system's, so the two sweeps separate what the generator costs from what refusals
   cost.

It returns markdown lines and the ``create.*`` / ``overload.*`` keys of
``reports/bench-<date>.json`` (bench.py merges them into what other sections wrote).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench.parts import Bench
from mandate_vault_harness.cpu import CpuMeter, split_cores
from mandate_vault_harness.load import (
    Phase,
    Run,
    Target,
    Throughput,
    percentile,
    recovery_seconds,
    run_open_loop,
    wrk_script,
    wrk_with_cpu,
)
from mandate_vault_harness.metrics import scrape, value
from mandate_vault_harness.postgres import admin_dsn
from mandate_vault_harness.services import ServiceProcess

ROOT = Path(__file__).resolve().parent.parent

QUICK = os.environ.get("BENCH_QUICK") == "1"
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "1" if QUICK else "3"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "2" if QUICK else "8"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "16"))
STEP_SECONDS = float(os.environ.get("BENCH_STEP_SECONDS", "1" if QUICK else "15"))
RECOVERY_SECONDS = float(os.environ.get("BENCH_RECOVERY_SECONDS", "2" if QUICK else "6"))
STEPS = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)
WARM_UP_SECONDS = 1.0 if QUICK else 3.0
RECOVERY_RATE = 0.5  # of capacity, after the 200 % step
PAIRS = int(os.environ.get("BENCH_PAIRS", "1" if QUICK else "5"))
PAIR_SECONDS = float(os.environ.get("BENCH_PAIR_SECONDS", "1" if QUICK else "10"))
PAIR_WARM_UP_SECONDS = 0.5 if QUICK else 2.0

# Production defaults: 10 % traces, WARNING logs (INFO sampled at 10 %), real secrets.
PRODUCTION = {
    "ENVIRONMENT": "production",
    "LOG_LEVEL": "WARNING",  # production's default (the test fixture would set INFO)
    "API_TOKEN_SIGNING_KEY": "bench-signing-key-0123456789abcdef",
    "API_WEBHOOK_ENCRYPTION_KEY": "YmVuY2gtb25seS13ZWJob29rLWVuY3J5cHRpb24ta2U=",
}
# Everything at 100 %: every request traced, logged at INFO and shipped.
FULL = {"ENVIRONMENT": "development", "LOG_LEVEL": "INFO"}
CONFIGS = {"production": PRODUCTION, "full": FULL}
SPY = ["py-spy"]  # on PATH under `uv run`


@dataclass
class CreateRun:
    throughput: Throughput
    requests: int
    cpu_ms: dict[str, float]  # per create, by process


@dataclass
class Step:
    offered: float  # share of capacity
    target_rps: float
    sent_rps: float
    goodput_rps: float
    admitted_p50_ms: float
    admitted_p99_ms: float
    refused: int
    refused_p99_ms: float
    other_errors: dict[str, int] = field(default_factory=dict)

    def row(self) -> str:
        errors = ", ".join(f"{k}: {v}" for k, v in self.other_errors.items()) or "none"
        return (
            f"| {self.offered:.0%} | {self.target_rps:,.0f} | {self.sent_rps:,.0f} "
            f"| {self.goodput_rps:,.0f} | {self.admitted_p50_ms:.1f} | {self.admitted_p99_ms:.1f} "
            f"| {self.refused:,} | {self.refused_p99_ms:.1f} | {errors} |"
        )


@dataclass
class Pair:
    """One round at 200 %: the closed-loop capacity, then twice that offered right after."""

    capacity: float
    step: Step

    @property
    def goodput_ratio(self) -> float:
        return self.step.goodput_rps / self.capacity

    def row(self) -> str:
        s = self.step
        errors = ", ".join(f"{k}: {v}" for k, v in s.other_errors.items()) or "none"
        return (
            f"| {self.capacity:,.0f} | {s.sent_rps:,.0f} | {s.goodput_rps:,.0f} "
            f"| {self.goodput_ratio:.0%} | {s.admitted_p99_ms:.1f} | {s.refused:,} "
            f"| {s.refused_p99_ms:.1f} | {errors} |"
        )


# --- processes and measurements -------------------------------------------------------------


def database_backends(database: str) -> list[int]:
    """The PostgreSQL backend processes serving `database` (not the server's other work)."""

    async def query() -> list[int]:
        conn = await asyncpg.connect(admin_dsn())
        try:
            rows = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", database)
            return [int(row["pid"]) for row in rows]
        finally:
            await conn.close()

    return asyncio.run(query())


@contextmanager
def services(
    stack: Bench, env: dict[str, str], code: str | None = None
) -> Iterator[tuple[ServiceProcess, ServiceProcess]]:
    """A jwt-verifier and an api configured with `env`, exporting over OTLP to the discarding
    sink; `code`: run another tree's sources instead (A/B)."""
    common = {**env, **stack.otlp_env()}
    if code:
        parts = ("shared/src", "services/api/src", "services/jwt-verifier/src")
        common["PYTHONPATH"] = ":".join(f"{code}/{part}" for part in parts)
    verifier = ServiceProcess(
        "jwt-verifier", {"VERIFIER_TRUSTSTORE_JSON": stack.system.truststore, **common}
    ).start()
    try:
        with stack.api({**common, "API_VERIFIER_URL": verifier.url}) as api:
            yield api, verifier
    finally:
        verifier.stop()
        verifier.log_path.unlink(missing_ok=True)


def _create_request(stack: Bench) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"vc_jwt": stack.token()}).encode()
    return body, {"Content-Type": "application/json", "X-API-Key": stack.api_key}


def closed_loop(
    stack: Bench, api: ServiceProcess, verifier: ServiceProcess, seconds: int
) -> CreateRun:
    """wrk on create; CPU per create of the api, the verifier and the database's backends."""
    script = wrk_script(*_create_request(stack))
    url = f"{api.url}/api/v1/mandates"
    database = stack.database_url.rsplit("/", 1)[1]
    try:
        wrk_with_cpu(url, 1, script, connections=CONNECTIONS)  # warm up: connections, caches
        meter = CpuMeter(
            {
                "api": lambda: [api.pid or 0],
                "verifier": lambda: [verifier.pid or 0],
                "postgres": lambda: database_backends(database),
            }
        ).start()
        result, wrk_cpu, count = wrk_with_cpu(url, seconds, script, connections=CONNECTIONS)
        used = meter.stop()
    finally:
        Path(script).unlink()
    per = {name: value * 1000 / max(count, 1) for name, value in used.items()}
    per["total"] = sum(per.values())
    per["load_generator"] = wrk_cpu * 1000 / max(count, 1)
    return CreateRun(result, count, per)


def trivial(api: ServiceProcess, seconds: int) -> Throughput:
    return wrk_with_cpu(f"{api.url}/api/v1/info", seconds, connections=CONNECTIONS)[0]


# --- overload --------------------------------------------------------------------------------


def sweep_phases(capacity: float) -> list[Phase]:
    """A warm-up (connections, caches; not reported), the steps, then back to 50 %."""
    warm_up = Phase("warm-up", capacity * STEPS[0], WARM_UP_SECONDS)
    steps = [Phase(f"{share:.0%}", capacity * share, STEP_SECONDS) for share in STEPS]
    recovery = Phase("recovery", capacity * RECOVERY_RATE, RECOVERY_SECONDS)
    return [warm_up, *steps, recovery]


def summarize_step(run: Run, index: int, share: float) -> Step:
    phase, outcomes = run.phases[index], run.of(index)
    admitted = [o.latency * 1000 for o in outcomes if o.status == 201]
    refused = [o.latency * 1000 for o in outcomes if o.refused]
    others: dict[str, int] = {}
    for o in outcomes:
        if o.status != 201 and not o.refused:
            key = f"HTTP {o.status}" if o.status else "no answer"
            others[key] = others.get(key, 0) + 1
    return Step(
        offered=share,
        target_rps=phase.rate,
        sent_rps=len(outcomes) / phase.seconds,
        goodput_rps=len(admitted) / phase.seconds,
        admitted_p50_ms=percentile(admitted, 0.5),
        admitted_p99_ms=percentile(admitted, 0.99),
        refused=len(refused),
        refused_p99_ms=percentile(refused, 0.99),
        other_errors=others,
    )


def _refusals_by_reason(api: ServiceProcess) -> dict[str, float]:
    """The api's own count of refusals by reason (empty if it cannot be read)."""
    for _ in range(3):
        try:
            samples = scrape(api.url)
        except httpx.HTTPError:
            time.sleep(2)
            continue
        return {
            reason: value(samples, "requests_shed_total", reason=reason)
            for reason in ("queue_full", "expected_wait", "deadline")
        }
    return {}


def overload_sweep(stack: Bench, api: ServiceProcess, capacity: float) -> tuple[Run, list[Step]]:
    body, headers = _create_request(stack)
    target = Target(api.url, "/api/v1/mandates", body, headers)
    run = run_open_loop(target, sweep_phases(capacity))
    steps = [summarize_step(run, i + 1, share) for i, share in enumerate(STEPS)]
    return run, steps


def paired_rounds(stack: Bench, api: ServiceProcess, verifier: ServiceProcess) -> list[Pair]:
    """`PAIRS` rounds of: closed-loop capacity (wrk, `SECONDS`), then at once twice that
    offered open loop (`PAIR_WARM_UP_SECONDS` not counted, then `PAIR_SECONDS`). Capacity and
    overload seconds apart, so the machine's drift hits both sides of each ratio."""
    body, headers = _create_request(stack)
    target = Target(api.url, "/api/v1/mandates", body, headers)
    pairs = []
    for _ in range(PAIRS):
        capacity = closed_loop(stack, api, verifier, SECONDS).throughput.rps
        rate = capacity * STEPS[-1]
        phases = [Phase("warm-up", rate, PAIR_WARM_UP_SECONDS), Phase("200%", rate, PAIR_SECONDS)]
        run = run_open_loop(target, phases)
        pairs.append(Pair(capacity, summarize_step(run, 1, STEPS[-1])))
    return pairs


def plot(steps: Sequence[Step], capacity: float, path: Path) -> None:
    import matplotlib  # noqa: PLC0415 - only the plot needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    offered = [s.offered * 100 for s in steps]
    figure, goodput_axis = plt.subplots(figsize=(8, 4.5))
    goodput_axis.plot(offered, [s.goodput_rps for s in steps], "o-", label="goodput (201/s)")
    goodput_axis.plot(offered, [s.sent_rps for s in steps], ":", color="grey", label="offered")
    goodput_axis.axhline(capacity, color="grey", linewidth=0.8, linestyle="--")
    goodput_axis.axhline(0.85 * capacity, color="tab:blue", linewidth=0.8, linestyle=":")
    goodput_axis.set_xlabel("offered load, % of closed-loop capacity")
    goodput_axis.set_ylabel("requests / s")
    latency_axis = goodput_axis.twinx()
    latency_axis.plot(
        offered, [s.admitted_p99_ms for s in steps], "s-", color="tab:red", label="admitted p99"
    )
    latency_axis.axhline(300, color="tab:red", linewidth=0.8, linestyle=":")
    latency_axis.set_ylabel("admitted p99, ms", color="tab:red")
    latency_axis.set_ylim(bottom=0)
    lines = goodput_axis.get_legend_handles_labels()
    more = latency_axis.get_legend_handles_labels()
    goodput_axis.legend(lines[0] + more[0], lines[1] + more[1], loc="upper left")
    goodput_axis.set_title(f"Create-mandate under overload (capacity {capacity:,.0f} req/s)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


# --- the section ----------------------------------------------------------------------------


def _median(runs: Sequence[CreateRun], attribute: str) -> float:
    return float(statistics.median(getattr(r.throughput, attribute) for r in runs))


def closed_loop_rounds(stack: Bench) -> tuple[list[float], list[CreateRun], list[CreateRun]]:
    off_env = {**PRODUCTION, "TELEMETRY_ENABLED": "false"}
    trivial_off: list[float] = []
    production: list[CreateRun] = []
    full: list[CreateRun] = []
    with stack.api(off_env) as api_off, services(stack, PRODUCTION) as (api, verifier):
        trivial(api_off, 1)
        for round_number in range(1, ROUNDS + 1):
            trivial_off.append(trivial(api_off, SECONDS).rps)
            production.append(closed_loop(stack, api, verifier, SECONDS))
            print(
                f"round {round_number}: trivial off {trivial_off[-1]:,.0f} req/s, "
                f"create {production[-1].throughput.rps:,.0f} req/s, "
                f"CPU ms {production[-1].cpu_ms}",
                flush=True,
            )
    with services(stack, FULL) as (api, verifier):
        for _ in range(ROUNDS):
            full.append(closed_loop(stack, api, verifier, SECONDS))
    return trivial_off, production, full


def section(stack: Bench, reports: Path, stem: str) -> tuple[list[str], dict[str, Any]]:
    """The section's markdown and figures; the plot goes to ``reports/<stem>-overload.png``."""
    trivial_off, production, full = closed_loop_rounds(stack)
    capacity = _median(production, "rps")
    ratios = [r.throughput.rps / off for r, off in zip(production, trivial_off, strict=True)]
    cpu = {
        n: round(statistics.median(r.cpu_ms[n] for r in production), 3)
        for n in production[0].cpu_ms
    }
    shared = overload(stack, split=False)
    split = overload(stack, split=True)
    png = reports / f"{stem}-overload.png"
    plot(shared.steps, shared.capacity, png)
    figures: dict[str, Any] = {
        "create": {
            "closed_loop_rps": round(capacity, 1),
            "ratio_to_trivial_off": round(statistics.median(ratios), 4),
            "trivial_off_rps": round(statistics.median(trivial_off), 1),
            "p50_ms": round(_median(production, "p50_ms"), 2),
            "p99_ms": round(_median(production, "p99_ms"), 2),
            "cpu_ms": {k: cpu[k] for k in ("api", "verifier", "postgres", "total")},
            "load_generator_cpu_ms": cpu["load_generator"],
            "all_at_100pct": {
                "closed_loop_rps": round(_median(full, "rps"), 1),
                "cpu_ms": {
                    n: round(statistics.median(r.cpu_ms[n] for r in full), 3)
                    for n in ("api", "verifier", "postgres", "total")
                },
            },
        },
        "overload": {**shared.figures(), "plot": png.name, "split_cores": split.figures()},
    }
    return _markdown(figures, production, full, split, shared, trivial_off), figures


@dataclass
class Overload:
    """One sweep: the capacity it was taken against, the run, its steps, refusals by reason."""

    capacity: float
    run: Run
    steps: list[Step]
    by_reason: dict[str, float]
    pairs: list[Pair]  # rounds at 200 %, each against the capacity measured just before

    def figures(self) -> dict[str, Any]:
        at_200 = self.steps[-1]
        lags = [o.lag * 1000 for o in self.run.outcomes]
        others: dict[str, int] = {}
        for pair in self.pairs:
            for kind, count in pair.step.other_errors.items():
                others[kind] = others.get(kind, 0) + count

        def median(read: Callable[[Pair], float]) -> float:
            return round(float(statistics.median(read(p) for p in self.pairs)), 3)

        return {
            "capacity_rps": round(self.capacity, 1),
            "at_200pct": {
                "goodput_ratio": median(lambda p: p.goodput_ratio),
                "admitted_p99_ms": median(lambda p: p.step.admitted_p99_ms),
                "refused_p99_ms": median(lambda p: p.step.refused_p99_ms),
                "sent_ratio": median(lambda p: p.step.sent_rps / p.capacity),
                "other_errors": others,
                "rounds": [
                    {"capacity_rps": round(p.capacity, 1), **p.step.__dict__} for p in self.pairs
                ],
            },
            "sweep_at_200pct": {
                "goodput_ratio": round(at_200.goodput_rps / self.capacity, 3),
                "admitted_p99_ms": round(at_200.admitted_p99_ms, 1),
                "refused_p99_ms": round(at_200.refused_p99_ms, 1),
                "other_errors": at_200.other_errors,
            },
            "recovery_s": recovery_seconds(self.run, self.steps[1].admitted_p99_ms),
            "refusals_by_reason": self.by_reason,
            "load_generator_cpu_share": round(self.run.cpu_seconds / self.run.elapsed, 3),
            "load_generator_send_lag_p99_ms": round(percentile(lags, 0.99), 1),
            "steps": [step.__dict__ for step in self.steps],
        }


def overload(stack: Bench, *, split: bool, capacity: float | None = None) -> Overload:
    """A sweep on fresh processes at production defaults, against the closed-loop capacity of
    those very processes, measured just before it (median of `ROUNDS` wrk runs; `capacity`
    overrides it), then `paired_rounds` at 200 %: the machine's speed drifts by 20 % within
    minutes (a capacity taken earlier on other processes made the ratio mostly noise), so the
    ``at_200pct`` figures are the medians of rounds whose capacity was measured seconds before
    their overload; the sweep's own 200 % step is reported beside them. `split`: the system
    (api, verifier, their PostgreSQL backends) runs on one core, the generator and wrk on the
    other, so the generator's own CPU (~40 us a request, wrk's ~22) no longer comes out of the
    system's; else all share both cores."""
    with services(stack, PRODUCTION) as (api, verifier):
        closed_loop(stack, api, verifier, 1)  # the pool's connections exist before pinning
        database = stack.database_url.rsplit("/", 1)[1]
        system = [api.pid or 0, verifier.pid or 0, *database_backends(database)]
        with split_cores(system) if split else contextlib.nullcontext():
            if capacity is None:
                rounds = [closed_loop(stack, api, verifier, SECONDS) for _ in range(ROUNDS)]
                capacity = _median(rounds, "rps")
            run, steps = overload_sweep(stack, api, capacity)
            pairs = paired_rounds(stack, api, verifier)
        return Overload(capacity, run, steps, _refusals_by_reason(api), pairs)


def _markdown(
    figures: dict[str, Any],
    production: Sequence[CreateRun],
    full: Sequence[CreateRun],
    split: Overload,
    shared: Overload,
    trivial_off: Sequence[float],
) -> list[str]:
    create = figures["create"]
    cpu, cpu_full = create["cpu_ms"], create["all_at_100pct"]["cpu_ms"]
    return [
        "### Create-mandate: closed loop and CPU per create",
        "",
        f"wrk -t1 -c{CONNECTIONS}, {len(production)} alternating rounds of {SECONDS} s. Telemetry "
        "on: traces, metrics and logs exported over OTLP (to a sink that discards them).",
        "",
        "| configuration | rounds req/s | median req/s | vs trivial, telemetry off | p50 ms "
        "| p99 ms | CPU ms per create: api + verifier + PostgreSQL = total |",
        "|---|---|---|---|---|---|---|",
        f"| `GET /api/v1/info`, telemetry off | {', '.join(f'{r:,.0f}' for r in trivial_off)} "
        f"| {create['trivial_off_rps']:,.0f} | 100 % | | | |",
        f"| create, production defaults (10 % traces, WARNING logs) "
        f"| {', '.join(f'{r.throughput.rps:,.0f}' for r in production)} "
        f"| {create['closed_loop_rps']:,.0f} | **{create['ratio_to_trivial_off']:.1%}** "
        f"| {create['p50_ms']:.1f} | {create['p99_ms']:.1f} "
        f"| {cpu['api']:.3f} + {cpu['verifier']:.3f} + {cpu['postgres']:.3f} "
        f"= **{cpu['total']:.3f}** |",
        f"| create, everything at 100 % (traces, INFO logs) "
        f"| {', '.join(f'{r.throughput.rps:,.0f}' for r in full)} "
        f"| {create['all_at_100pct']['closed_loop_rps']:,.0f} "
        f"| {create['all_at_100pct']['closed_loop_rps'] / create['trivial_off_rps']:.1%} | | "
        f"| {cpu_full['api']:.3f} + {cpu_full['verifier']:.3f} + {cpu_full['postgres']:.3f} "
        f"= {cpu_full['total']:.3f} |",
        "",
        *_markdown_overload(
            figures["overload"],
            shared,
            "the load generator on the same two cores as the system; capacity measured "
            "closed-loop on the sweep's processes first",
        ),
        *_markdown_overload(
            figures["overload"]["split_cores"],
            split,
            "the system (api, jwt-verifier, their PostgreSQL backends) on one core, the load "
            "generator and wrk on the other; capacity measured closed-loop that way first",
        ),
    ]


def _markdown_overload(figures: dict[str, Any], sweep: Overload, how: str) -> list[str]:
    at_200, swept = figures["at_200pct"], figures["sweep_at_200pct"]
    return [
        f"### Create-mandate under overload: {how} (open loop, capacity "
        f"{figures['capacity_rps']:,.0f} req/s)",
        "",
        f"Capacity: median of {ROUNDS} closed-loop runs on these processes just before the "
        f"sweep. Each step {STEP_SECONDS:g} s at a share of the capacity, then "
        f"{RECOVERY_SECONDS:g} s at 50 %. Latency from each request's scheduled send time. The "
        f"load generator used {figures['load_generator_cpu_share']:.0%} of a core; its send lag "
        f"p99 was {figures['load_generator_send_lag_p99_ms']:.1f} ms. Refusals by reason (sweep "
        "and rounds below): "
        f"{', '.join(f'{k} {v:,.0f}' for k, v in figures['refusals_by_reason'].items())}.",
        "",
        *_markdown_steps(sweep.steps),
        "",
        f"Then {len(sweep.pairs)} round{'s' * (len(sweep.pairs) != 1)} at 200 %, each a "
        f"{SECONDS} s closed loop on the same processes and at once twice the req/s it "
        f"measured, open loop ({PAIR_SECONDS:g} s counted after {PAIR_WARM_UP_SECONDS:g} s): "
        "the machine's speed drifts by up to 20 % within a minute, so a ratio is only sound "
        "between measurements seconds apart.",
        "",
        "| capacity req/s | sent req/s | goodput req/s | goodput / capacity | admitted p99 ms "
        "| refused (503) | refused p99 ms | other errors |",
        "|---|---|---|---|---|---|---|---|",
        *(pair.row() for pair in sweep.pairs),
        "",
        f"At 200 % (medians of the rounds): goodput {at_200['goodput_ratio']:.0%} of capacity "
        f"(goal >= 85 %; the sweep's 200 % step: {swept['goodput_ratio']:.0%}), admitted p99 "
        f"{at_200['admitted_p99_ms']:.0f} ms (goal <= 300), refusals p99 "
        f"{at_200['refused_p99_ms']:.1f} ms (goal <= 20), other errors "
        f"{at_200['other_errors'] or 'none'}; back to normal latency "
        f"{figures['recovery_s']:.1f} s after the sweep's overload (goal <= 2).",
        "",
    ]


def _markdown_steps(steps: Sequence[Step]) -> list[str]:
    return [
        "| offered | target req/s | sent req/s | goodput req/s | admitted p50 ms "
        "| admitted p99 ms | refused (503) | refused p99 ms | other errors |",
        "|---|---|---|---|---|---|---|---|---|",
        *(step.row() for step in steps),
    ]


# --- development tools -----------------------------------------------------------------------


def profile(
    stack: Bench,
    api: ServiceProcess,
    verifier: ServiceProcess,
    seconds: int,
    out: Path,
    fmt: str,
) -> None:
    """py-spy flame graphs of the api and the verifier while wrk drives creates."""
    script = wrk_script(*_create_request(stack))
    url = f"{api.url}/api/v1/mandates"
    suffix = {"flamegraph": "svg", "raw": "txt", "speedscope": "json"}[fmt]
    try:
        wrk_with_cpu(url, 2, script, connections=CONNECTIONS)
        spies = [
            subprocess.Popen(
                [*SPY, "record", "--pid", str(process.pid), "--duration", str(seconds),
                 "--rate", "250", "--format", fmt, "--output", str(out / f"{name}.{suffix}")],
                stdout=subprocess.DEVNULL,
            )
            for name, process in (("api", api), ("jwt-verifier", verifier))
        ]  # fmt: skip
        print(wrk_with_cpu(url, seconds, script, connections=CONNECTIONS)[0])
        for spy in spies:
            spy.wait()
    finally:
        Path(script).unlink()


def _print(label: str, run: CreateRun) -> None:
    t = run.throughput
    cpu = "  ".join(f"{k} {v:.3f}" for k, v in run.cpu_ms.items())
    print(f"{label} {t.rps:7.0f} req/s p50 {t.p50_ms:5.1f} p99 {t.p99_ms:6.1f}  CPU ms: {cpu}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["measure", "ab", "profile", "sweep"])
    parser.add_argument(
        "--capacity", type=float, help="sweep: req/s taken as 100 %% (else measured first)"
    )
    parser.add_argument("--split", action="store_true", help="sweep: system, load on a core each")
    parser.add_argument("--config", choices=list(CONFIGS), default="production")
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--base", help="a tree (git archive) to run instead, or, ab, against")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "perf")
    parser.add_argument("--format", default="flamegraph", choices=["flamegraph", "raw"])
    args = parser.parse_args()
    env = CONFIGS[args.config]
    with Bench() as stack:
        if args.command == "ab":
            with services(stack, env, args.base) as a, services(stack, env) as b:
                for _ in range(args.rounds):
                    _print("A", closed_loop(stack, *a, args.seconds))
                    _print("B", closed_loop(stack, *b, args.seconds))
            return
        if args.command == "sweep":
            sweep = overload(stack, split=args.split, capacity=args.capacity)
            print(*_markdown_steps(sweep.steps), sep="\n")
            print(json.dumps({k: v for k, v in sweep.figures().items() if k != "steps"}))
            return
        with services(stack, env, args.base) as (api, verifier):
            if args.command == "profile":
                args.out.mkdir(parents=True, exist_ok=True)
                profile(stack, api, verifier, args.seconds, args.out, args.format)
                return
            for _ in range(args.rounds):
                _print("", closed_loop(stack, api, verifier, args.seconds))


if __name__ == "__main__":
    main()
