"""An open-loop HTTP load generator cheap enough to offer thousands of requests a second from
the same two cores as the services it loads.

Open loop: request *i* of a phase is sent at its scheduled time whatever the answers to earlier
ones do, and its latency counts from that scheduled time (no coordinated omission). Requests go
over `mandate_vault_shared.keepalive` connections (~10 us of CPU a request where aiohttp took
~100 us), as many as are needed for the requests in flight. The generator measures its own CPU
(`cpu_seconds`, the thread's) and how late it sent (`send_lag_p99_ms`): if it cannot keep up,
the figures say so rather than quietly offering less.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import uvloop

from mandate_vault_shared.keepalive import KeepAliveClient

REFUSAL_MARK: Final = b'"overloaded"'  # the error code of an admission-control refusal
_BATCH_S: Final = 0.0005  # requests due within this are sent together


@dataclass(frozen=True)
class Phase:
    name: str
    rate: float  # requests per second
    seconds: float


@dataclass(slots=True)
class Outcome:
    phase: int
    scheduled: float  # seconds since the load started
    latency: float  # seconds from the scheduled time to the answer
    status: int  # 0: no answer (connection failed or timed out)
    refused: bool  # a 503 from admission control (not from a failed dependency)
    lag: float  # how late it was sent, seconds


@dataclass
class Run:
    phases: Sequence[Phase]
    outcomes: list[Outcome] = field(default_factory=list)
    cpu_seconds: float = 0.0
    elapsed: float = 0.0

    def of(self, phase: int) -> list[Outcome]:
        return [o for o in self.outcomes if o.phase == phase]


@dataclass(frozen=True)
class Target:
    base_url: str
    path: str
    body: bytes
    headers: dict[str, str]
    timeout: float = 10.0


async def _drive(target: Target, phases: Sequence[Phase]) -> Run:
    run = Run(phases)
    client = KeepAliveClient(target.base_url, limit=20_000)
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task[None]] = set()

    async def one(phase: int, offset: float, at: float) -> None:
        sent = loop.time()
        lag = sent - at  # < 0 when sent up to _BATCH_S early
        status, refused = 0, False
        try:
            async with asyncio.timeout(target.timeout):
                answer = await client.post(target.path, target.body, target.headers)
            status = answer.status
            refused = status == 503 and REFUSAL_MARK in answer.body
        except (OSError, TimeoutError):
            pass
        latency = loop.time() - max(at, sent)  # from the scheduled time, or the send if earlier
        run.outcomes.append(Outcome(phase, offset, latency, status, refused, max(lag, 0.0)))

    cpu = time.thread_time()
    await client.warm(_connections_for(phases[0]))
    start = loop.time() + 0.05
    offset = 0.0
    for index, phase in enumerate(phases):
        interval, end = 1.0 / phase.rate, offset + phase.seconds
        if index + 1 < len(phases):  # connect for the next phase while this one runs
            upcoming = phases[index + 1]
            warming = loop.create_task(_warm_later(client, upcoming, start + end - loop.time()))
            pending.add(warming)
            warming.add_done_callback(pending.discard)
        while offset < end - 1e-9:
            delay = start + offset - loop.time()
            if delay > _BATCH_S:
                await asyncio.sleep(delay)
            task = loop.create_task(one(index, offset, start + offset))
            pending.add(task)
            task.add_done_callback(pending.discard)
            offset += interval
    await asyncio.gather(*pending)
    run.elapsed = loop.time() - start
    run.cpu_seconds = time.thread_time() - cpu
    await client.close()
    return run


def _connections_for(phase: Phase) -> int:
    """Connections a phase keeps busy when answers take up to ~0.25 s (HTTP/1.1: one request
    in flight per connection). Opened ahead, so a step up in load is not a connection storm
    (whose overflowing accept queue would add SYN retransmits of 1 s to the figures)."""
    return max(8, min(4096, int(phase.rate * 0.25)))


async def _warm_later(client: KeepAliveClient, phase: Phase, starts_in: float) -> None:
    await asyncio.sleep(max(0.0, starts_in - 1.0))
    with contextlib.suppress(OSError):
        await client.warm(_connections_for(phase))


def run_open_loop(target: Target, phases: Sequence[Phase]) -> Run:
    """Drive `phases` back to back (one schedule, no pause between them)."""
    return uvloop.run(_drive(target, phases))


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]
