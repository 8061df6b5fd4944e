"""The collector, Loki and Sentry black-holed during load: users notice nothing.

Paired runs on the same database and broker: the api and the jwt-verifier are started with
telemetry going to healthy endpoints (a process that accepts and discards), then restarted with
every endpoint black-holed (a TCP port that accepts nothing and answers nothing): OTLP traces
and metrics (the collector), OTLP logs (Loki's OTLP intake) and the Sentry DSN. Each run drives
the same open-loop, constant-rate load (scripts/loadgen.py: latency measured from each
request's scheduled time) of reads and mandate creations. Runs are ordered H B B H ... so drift
on the shared machine falls on both sides; the p99 of the pooled latencies is compared.
"""

from __future__ import annotations

import asyncio
from itertools import cycle
from typing import Any

import aiohttp
import httpx

from mandate_vault_harness.load import OpenLoop, constant_rate
from mandate_vault_harness.metrics import scrape, value
from mandate_vault_harness.net import BlackHole
from mandate_vault_harness.sinks import DiscardServer
from mandate_vault_harness.system import System, Tenant
from reliability.core import Findings, Row, Scale, wait_until

NAME = "telemetry endpoints black-holed"
P99_TOLERANCE = 1.10
EXPORT_TIMEOUT_SECONDS = 3  # OTEL_EXPORTER_OTLP_TIMEOUT in both variants (SDK default: 10)
READ_RPS, CREATE_RPS = 80.0, 20.0
TIMEOUT = aiohttp.ClientTimeout(total=10)


def _healthy_env(sink: DiscardServer) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_TIMEOUT": str(EXPORT_TIMEOUT_SECONDS),
        "OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint,
        "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": f"{sink.endpoint}/v1/logs",
        "SENTRY_DSN": f"http://publickey@127.0.0.1:{sink.port}/1",
    }


def _blackholed_env(collector: BlackHole, loki: BlackHole, sentry: BlackHole) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_TIMEOUT": str(EXPORT_TIMEOUT_SECONDS),
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.port}",
        "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": f"http://127.0.0.1:{loki.port}/v1/logs",
        "SENTRY_DSN": f"http://publickey@127.0.0.1:{sentry.port}/1",
    }


async def _load(
    api: str, tenant: Tenant, mandate_id: str, tokens: list[str], seconds: float
) -> tuple[OpenLoop, OpenLoop]:
    headers = tenant.headers()
    read_url = f"{api}/api/v1/mandates/{mandate_id}"
    create_url = f"{api}/api/v1/mandates"
    supply = cycle(tokens)

    async def read(session: aiohttp.ClientSession) -> int:
        async with session.get(read_url, headers=headers, timeout=TIMEOUT) as response:
            await response.read()
            return response.status

    async def create(session: aiohttp.ClientSession) -> int:
        body = {"vc_jwt": next(supply)}
        async with session.post(create_url, json=body, headers=headers, timeout=TIMEOUT) as r:
            await r.read()
            return r.status

    reads, creates = await asyncio.gather(
        constant_rate(read, READ_RPS, seconds), constant_rate(create, CREATE_RPS, seconds)
    )
    return reads, creates


def _one_run(
    system: System,
    tenant: Tenant,
    telemetry: dict[str, Any],
    seconds: float,
    tokens: list[str],
    *,
    blackholed: bool,
) -> dict[str, Any]:
    verifier = system.start_verifier(wait=False, **telemetry)
    api = system.start_api(wait=False, **telemetry)
    system.ready()
    try:
        first = httpx.post(
            f"{api.url}/api/v1/mandates",
            json={"vc_jwt": tokens[0]},
            headers=tenant.headers(),
            timeout=10,
        )
        first.raise_for_status()
        target = first.json()["id"]
        asyncio.run(_load(api.url, tenant, target, tokens, 1.0))  # warm-up, not measured
        reads, creates = asyncio.run(_load(api.url, tenant, target, tokens, seconds))

        def dropped_now() -> float:
            return value(scrape(api.url), "telemetry_dropped_total") + value(
                scrape(verifier.url), "telemetry_dropped_total"
            )

        if blackholed:
            # a failed export is counted once its timeout has passed
            wait_until(lambda: dropped_now() > 0, timeout=EXPORT_TIMEOUT_SECONDS * 3)
        dropped = dropped_now()
    finally:
        system.retire(api)
        system.retire(verifier)
    return {"reads": reads, "creates": creates, "dropped": dropped}


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)] if ordered else float("nan")


def run(scale: Scale) -> Row:
    pairs = scale.pick(1, 2)
    seconds = scale.pick(4.0, 30.0)
    findings = Findings()
    sink = DiscardServer().start()
    holes = (BlackHole(), BlackHole(), BlackHole())
    runs: dict[str, list[dict[str, Any]]] = {"healthy": [], "black-holed": []}
    order = ["healthy", "black-holed", "black-holed", "healthy"] * pairs
    order = order[: 2 * pairs] if scale is Scale.SHORT else order
    try:
        with System(verifier=False) as system:  # each run starts its own verifier and api
            tenant = system.add_tenant()
            issuer = system.issuers[0]
            tokens = [issuer.mandate(expires_in=86_400) for _ in range(int(CREATE_RPS * 40))]
            for variant in order:
                env = _healthy_env(sink) if variant == "healthy" else _blackholed_env(*holes)
                runs[variant].append(
                    _one_run(system, tenant, env, seconds, tokens, blackholed=variant != "healthy")
                )
    finally:
        sink.stop()
        for hole in holes:
            hole.close()

    figures: dict[str, Any] = {"runs": len(order), "seconds_per_run": seconds}
    pooled: dict[str, dict[str, list[float]]] = {}
    errors: dict[str, dict[str, int]] = {}
    for variant, results in runs.items():
        pooled[variant] = {"reads": [], "creates": []}
        errors[variant] = {}
        for result in results:
            for kind in ("reads", "creates"):
                loop: OpenLoop = result[kind]
                pooled[variant][kind] += loop.latencies_ms
                for error, count in loop.errors.items():
                    errors[variant][error] = errors[variant].get(error, 0) + count
        figures[f"{variant}_requests"] = sum(len(v) for v in pooled[variant].values())
        figures[f"{variant}_errors"] = errors[variant]
        figures[f"{variant}_telemetry_dropped"] = sum(r["dropped"] for r in results)
    ratios = {}
    for kind in ("reads", "creates"):
        healthy = _percentile(pooled["healthy"][kind], 0.99)
        holed = _percentile(pooled["black-holed"][kind], 0.99)
        figures[f"{kind}_p99_ms"] = {"healthy": round(healthy, 2), "black-holed": round(holed, 2)}
        ratios[kind] = holed / healthy if healthy else float("inf")
    figures["p99_ratio"] = {k: round(v, 3) for k, v in ratios.items()}

    visible = sum(errors["black-holed"].values())
    findings.check(visible == 0, f"{visible} user-visible errors while black-holed: {errors}")
    findings.check(
        sum(errors["healthy"].values()) == 0, f"errors in the healthy runs too: {errors['healthy']}"
    )
    findings.check(
        figures["black-holed_telemetry_dropped"] > 0,
        "telemetry_dropped_total stayed 0: the black holes were not in effect",
    )
    worst = max(ratios.values())
    if scale is Scale.FULL:
        findings.check(
            worst <= P99_TOLERANCE,
            f"p99 black-holed/healthy = {worst:.2f} (> {P99_TOLERANCE:.2f}): {ratios}",
        )
        note = ""
    else:
        note = " (short run: p99 ratio reported, not judged)"
    tried = (
        f"{len(order)} runs x {seconds:.0f} s of {READ_RPS:.0f} reads/s + {CREATE_RPS:.0f} "
        "creates/s (open loop), collector + Loki + Sentry black-holed vs healthy"
    )
    leaked = (
        f"{visible} user-visible errors; p99 ratio reads {ratios['reads']:.2f}, "
        f"creates {ratios['creates']:.2f}{note}"
    )
    return findings.row(NAME, tried, leaked, figures)
