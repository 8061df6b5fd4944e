"""Load generators for `make bench`: wrk for throughput, an open-model generator for latency.

wrk is closed-loop: when the server slows down it sends less, so its latency figures hide the
queueing a real client population would see (coordinated omission). Latency here comes from
`constant_rate`, which schedules request *i* at ``start + i / rate`` whatever the answers do,
and measures each latency from that intended time. Debian ships wrk without wrk2's ``-R``.
"""

from __future__ import annotations

import asyncio
import json
import re
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp


@dataclass
class Throughput:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


_LATENCY = re.compile(r"^\s+(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def parse_wrk(output: str) -> Throughput:
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    latency = {p: float(v) * _UNITS[u] for p, v, u in _LATENCY.findall(output)}
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses:\s+(\d+)", output))
    timeouts = re.search(r"Socket errors:.*?timeout (\d+)", output)
    errors += int(timeouts.group(1)) if timeouts else 0
    return Throughput(
        float(rate.group(1)) if rate else 0.0,
        latency.get("50", float("nan")),
        latency.get("99", float("nan")),
        errors,
    )


def wrk(
    url: str,
    seconds: int,
    connections: int,
    *,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Throughput:
    """Closed-loop throughput with wrk -t1 (one thread: the machine has two cores)."""
    script = None
    if method != "GET" or body or headers:
        lua = [f'wrk.method = "{method}"']
        if body is not None:
            lua.append(f"wrk.body = {json.dumps(body.decode())}")
        for name, value in (headers or {}).items():
            lua.append(f'wrk.headers["{name}"] = {json.dumps(value)}')
        script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)  # noqa: SIM115
        script.write("\n".join(lua) + "\n")
        script.close()
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    if script is not None:
        command += ["-s", script.name]
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=True)
    finally:
        if script is not None:
            Path(script.name).unlink()
    return parse_wrk(result.stdout)


@dataclass
class OpenLoop:
    target_rps: float
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    sent: int = 0
    elapsed: float = 0.0

    @property
    def achieved_rps(self) -> float:
        return len(self.latencies_ms) / self.elapsed if self.elapsed else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(int(q * len(ordered)), len(ordered) - 1)]

    def summary(self) -> dict[str, Any]:
        return {
            "target_rps": self.target_rps,
            "achieved_rps": round(self.achieved_rps, 1),
            "p50_ms": round(self.percentile(0.50), 2),
            "p95_ms": round(self.percentile(0.95), 2),
            "p99_ms": round(self.percentile(0.99), 2),
            "max_ms": round(max(self.latencies_ms, default=float("nan")), 2),
            "mean_ms": round(statistics.fmean(self.latencies_ms), 2) if self.latencies_ms else None,
            "errors": dict(self.errors),
        }


Request = Callable[[aiohttp.ClientSession], Awaitable[int]]


async def constant_rate(request: Request, rps: float, seconds: float) -> OpenLoop:
    """Send `request` at a fixed rate; latency counts from each request's scheduled time."""
    result = OpenLoop(rps, seconds)
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        loop = asyncio.get_running_loop()
        start = loop.time()
        total = int(rps * seconds)
        tasks = []

        async def one(scheduled: float) -> None:
            try:
                status = await request(session)
                if status >= 400:
                    result.errors[f"HTTP {status}"] = result.errors.get(f"HTTP {status}", 0) + 1
                    return
            except (aiohttp.ClientError, TimeoutError) as exc:
                name = type(exc).__name__
                result.errors[name] = result.errors.get(name, 0) + 1
                return
            result.latencies_ms.append((loop.time() - scheduled) * 1000)

        for index in range(total):
            scheduled = start + index / rps
            delay = scheduled - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(scheduled)))
            result.sent += 1
        await asyncio.gather(*tasks)
        result.elapsed = loop.time() - start
    return result


def run_constant_rate(request: Request, rps: float, seconds: float) -> OpenLoop:
    started = time.perf_counter()
    outcome = asyncio.run(constant_rate(request, rps, seconds))
    outcome.elapsed = outcome.elapsed or time.perf_counter() - started
    return outcome
