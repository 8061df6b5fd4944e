"""The closed-loop shape: wrk for throughput (Debian's wrk, without wrk2's ``-R``).

wrk is closed-loop: when the server slows down it sends less, so its latency figures hide the
queueing a real client population would see (coordinated omission). Latency under a given
offered load comes from the open-loop shapes (`openloop`, `rate`).
"""

from __future__ import annotations

import json
import re
import resource
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path


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


def wrk_script(body: bytes | None, headers: dict[str, str], method: str = "POST") -> str:
    """A Lua file making wrk send `method` with `body` and `headers`; the caller removes it."""
    lua = [f'wrk.method = "{method}"']
    if body is not None:
        lua.append(f"wrk.body = {json.dumps(body.decode())}")
    lua += [f'wrk.headers["{k}"] = {json.dumps(v)}' for k, v in headers.items()]
    script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)  # noqa: SIM115
    script.write("\n".join(lua) + "\n")
    script.close()
    return script.name


def wrk_with_cpu(
    url: str, seconds: int, script: str | None = None, connections: int = 16
) -> tuple[Throughput, float, int]:
    """wrk -t1 closed loop (one thread: the machine has two cores); its figures, its own CPU
    seconds and the number of requests it made."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    if script is not None:
        command += ["-s", script]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    count = next((int(line.split()[0]) for line in out.splitlines() if "requests in" in line), 0)
    return parse_wrk(out), cpu, count


def wrk(
    url: str,
    seconds: int,
    connections: int,
    *,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Throughput:
    """Closed-loop throughput of one request shape."""
    script = None
    if method != "GET" or body or headers:
        script = wrk_script(body, headers or {}, method)
    try:
        return wrk_with_cpu(url, seconds, script, connections)[0]
    finally:
        if script is not None:
            Path(script).unlink()
