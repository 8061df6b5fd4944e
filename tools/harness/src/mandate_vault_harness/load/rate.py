"""The aiohttp shapes of the load generator, on the same open-loop schedule
(`schedule.paced`): any request at a constant rate (`constant_rate`, latency measured from each
request's due time), and mandate creation that keeps every answer (`CreateLoad`, in a
background thread, so a scenario can break things meanwhile and reconcile the answers with the
database and the webhook receiver afterwards).
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from mandate_vault_harness.load.schedule import Phase, paced

# --- any request, at a constant rate ----------------------------------------------------------


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

        async def one(_: int, __: int, ___: float, due: float) -> None:
            result.sent += 1
            try:
                status = await request(session)
                if status >= 400:
                    result.errors[f"HTTP {status}"] = result.errors.get(f"HTTP {status}", 0) + 1
                    return
            except (aiohttp.ClientError, TimeoutError) as exc:
                name = type(exc).__name__
                result.errors[name] = result.errors.get(name, 0) + 1
                return
            result.latencies_ms.append((loop.time() - due) * 1000)

        result.elapsed = await paced([Phase("constant", rps, seconds)], one)
    return result


def run_constant_rate(request: Request, rps: float, seconds: float) -> OpenLoop:
    return asyncio.run(constant_rate(request, rps, seconds))


# --- mandate creation, every answer kept ------------------------------------------------------


@dataclass
class Answer:
    index: int
    sent_at: float  # seconds since the load started
    seconds: float  # answer time
    status: int | None  # None: no HTTP answer (connection error, timeout)
    body: dict[str, Any] | None = None
    retry_after: str | None = None
    error: str | None = None
    answered_at: float = 0.0  # time.monotonic() when the answer (or the failure) came

    @property
    def mandate_id(self) -> str | None:
        return None if self.body is None or self.status != 201 else self.body.get("id")


@dataclass
class CreateLoad:
    """Creates `count` mandates at `rps` in a background thread (`token(i)` is the i-th's JWT)."""

    url: str
    headers: dict[str, str]
    token: Callable[[int], str]
    rps: float
    count: int
    timeout: float = 15.0
    # Round-robin over these instead of `url` (a scenario removes a killed replica, as a load
    # balancer's health check would).
    urls: list[str] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    started_at: float = 0.0  # time.monotonic() when start() was called
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> CreateLoad:
        self.started_at = time.monotonic()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()
        return self

    def elapsed(self) -> float:
        return time.monotonic() - self.started_at

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> list[Answer]:
        assert self._thread is not None
        self._thread.join(timeout)
        return sorted(self.answers, key=lambda a: a.index)

    @property
    def done(self) -> bool:
        return self._thread is not None and not self._thread.is_alive()

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        tokens = [self.token(i) for i in range(self.count)]
        phase = Phase("create", self.rps, self.count / self.rps)
        async with aiohttp.ClientSession(timeout=timeout) as session:

            async def one(_: int, index: int, offset: float, due: float) -> None:
                await self._one(session, index, tokens[index], due - offset)

            await paced([phase], one, stop=self._stop.is_set)

    async def _one(
        self, session: aiohttp.ClientSession, index: int, token: str, start: float
    ) -> None:
        sent = time.monotonic()  # the loop's clock: `start` is on it too
        answer = Answer(index, sent - start, 0.0, None)
        try:
            urls = list(self.urls) or [self.url]
            async with session.post(
                f"{urls[index % len(urls)]}/api/v1/mandates",
                json={"vc_jwt": token},
                headers=self.headers,
            ) as response:
                answer.status = response.status
                answer.retry_after = response.headers.get("Retry-After")
                try:
                    answer.body = await response.json(content_type=None)
                except ValueError:
                    answer.body = None
        except (aiohttp.ClientError, TimeoutError) as exc:
            answer.error = type(exc).__name__
        answer.answered_at = time.monotonic()
        answer.seconds = answer.answered_at - sent
        self.answers.append(answer)


def summarize(answers: list[Answer]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for answer in answers:
        key = str(answer.status) if answer.status is not None else f"no answer ({answer.error})"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))
