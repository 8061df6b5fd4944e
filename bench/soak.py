"""`make soak`: memory of every service after 100,000 requests, then flat over a long soak.

1. Warm-up volume: SOAK_REQUESTS (100,000) requests to the api (a mix of the trivial endpoint
   and mandate creations, which also drive the verifier, the outbox relay and webhook
   deliveries through the worker) and the same number of verifications to the jwt-verifier.
2. Soak: SOAK_MINUTES (10) of steady load on all three, sampling each process's RSS every
   SOAK_SAMPLE_SECONDS (30).

Prints, and writes reports/soak-<date>.md: RSS after the volume, at the start and the end of the
soak, the growth over the soak (goal < 5 %) and the peak (goal <= 200 MB).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench.parts import Bench
from mandate_vault_harness.load import wrk
from mandate_vault_harness.services import ServiceProcess

ROOT = Path(__file__).resolve().parent.parent

REQUESTS = int(os.environ.get("SOAK_REQUESTS", "100000"))
MINUTES = float(os.environ.get("SOAK_MINUTES", "10"))
SAMPLE_SECONDS = float(os.environ.get("SOAK_SAMPLE_SECONDS", "30"))
CONNECTIONS = 8
REPORTS = Path(os.environ.get("SOAK_REPORTS_DIR", ROOT / "reports"))


@dataclass
class Memory:
    samples: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    def sample(self, processes: dict[str, ServiceProcess], elapsed: float) -> None:
        for name, process in processes.items():
            self.samples.setdefault(name, []).append((elapsed, process.rss_mb()))


def _drive(url: str, requests: int, body: bytes | None, headers: dict[str, str] | None) -> float:
    """Send about `requests` requests with wrk (run in slices); returns the rate achieved."""
    sent, rate = 0, 0.0
    while sent < requests:
        method = "POST" if body is not None else "GET"
        result = wrk(url, 10, CONNECTIONS, method=method, body=body, headers=headers)
        sent += int(result.rps * 10)
        rate = result.rps
    return rate


def _volume(stack: Bench, api: ServiceProcess) -> None:
    create = json.dumps({"vc_jwt": stack.token()}).encode()
    headers = {"Content-Type": "application/json", "X-API-Key": stack.api_key}
    verify = json.dumps({"jwt": stack.token(), "allowed_issuers": [stack.issuer.did]}).encode()
    jobs = [
        (f"{api.url}/api/v1/info", REQUESTS * 4 // 5, None, None),
        (f"{api.url}/api/v1/mandates", REQUESTS // 5, create, headers),
        (
            f"{stack.verifier.url}/api/v1/verify",
            REQUESTS,
            verify,
            {"Content-Type": "application/json"},
        ),
    ]
    for url, count, body, extra in jobs:
        print(f"volume: {count:,} requests to {url.split('/', 3)[-1]}", flush=True)
        _drive(url, count, body, extra)


def _soak(stack: Bench, api: ServiceProcess, processes: dict[str, ServiceProcess]) -> Memory:
    memory = Memory()
    create = json.dumps({"vc_jwt": stack.token()}).encode()
    headers = {"Content-Type": "application/json", "X-API-Key": stack.api_key}
    started = time.monotonic()
    memory.sample(processes, 0.0)
    while (elapsed := time.monotonic() - started) < MINUTES * 60:
        wrk(
            f"{api.url}/api/v1/mandates",
            int(SAMPLE_SECONDS),
            4,
            method="POST",
            body=create,
            headers=headers,
        )
        memory.sample(processes, time.monotonic() - started)
        rss = ", ".join(f"{n} {s[-1][1]:.0f} MB" for n, s in memory.samples.items())
        print(f"soak {elapsed / 60:5.1f} min: {rss}", flush=True)
    return memory


def main() -> None:
    started = datetime.now(UTC)
    with (
        Bench() as stack,
        stack.api(stack.otlp_env()) as api,
        stack.worker(stack.otlp_env()) as worker,
    ):
        stack.subscribe(api.url, f"{stack.sink.endpoint}/hook")  # answers 200, keeps nothing
        processes = {"api": api, "jwt-verifier": stack.verifier, "webhook-worker": worker}
        _volume(stack, api)
        after_volume = {name: process.rss_mb() for name, process in processes.items()}
        memory = _soak(stack, api, processes)
    rows = [
        "| service | RSS after the volume | soak start | soak end | growth over the soak | peak |",
        "|---|---|---|---|---|---|",
    ]
    for name, samples in memory.samples.items():
        first, last = samples[0][1], samples[-1][1]
        peak = max(value for _, value in samples)
        rows.append(
            f"| {name} | {after_volume[name]:.0f} MB | {first:.0f} MB | {last:.0f} MB "
            f"| {(last - first) / first:+.1%} | {peak:.0f} MB |"
        )
    report = [
        f"# Soak {started.isoformat(timespec='seconds')}",
        "",
        f"{REQUESTS:,} requests to the api (4/5 trivial, 1/5 mandate creations with a webhook "
        f"subscription) and {REQUESTS:,} verifications, then {MINUTES:g} minutes of mandate "
        f"creations; RSS sampled every {SAMPLE_SECONDS:g} s. Goals: <= 200 MB, < 5 % growth.",
        "",
        *rows,
    ]
    text = "\n".join(report)
    print("\n" + text)
    REPORTS.mkdir(exist_ok=True)
    path = REPORTS / f"soak-{started:%Y-%m-%d}.md"
    path.write_text(text + "\n")
    print(f"report: {path}")


if __name__ == "__main__":
    main()
