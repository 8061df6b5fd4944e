"""The lean shape of the load generator: one fixed POST, cheap enough to offer thousands of
requests a second from the same two cores as the services it loads.

Requests follow the open-loop schedule (`schedule.paced`) over
`mandate_vault_shared.keepalive` connections (~10 us of CPU a request where aiohttp took
~100 us), as many as are needed for the requests in flight. The generator measures its own CPU
(`cpu_seconds`, the thread's) and how late it sent (`lag`): if it cannot keep up, the figures
say so rather than quietly offering less.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import uvloop

from mandate_vault_harness.load.schedule import Phase, paced
from mandate_vault_shared.keepalive import KeepAliveClient

REFUSAL_MARK: Final = b'"overloaded"'  # the error code of an admission-control refusal
WINDOW_S: Final = 0.1  # recovery is judged on windows of requests this long (by scheduled time)
STEADY_WINDOWS: Final = 10  # ... and counts once this many windows in a row are normal


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
    warming: set[asyncio.Task[None]] = set()

    async def one(phase: int, _: int, offset: float, at: float) -> None:
        sent = loop.time()
        status, refused = 0, False
        try:
            async with asyncio.timeout(target.timeout):
                answer = await client.post(target.path, target.body, target.headers)
            status = answer.status
            refused = status == 503 and REFUSAL_MARK in answer.body
        except (OSError, TimeoutError):
            pass
        latency = loop.time() - max(at, sent)  # from the scheduled time, or the send if earlier
        run.outcomes.append(Outcome(phase, offset, latency, status, refused, max(sent - at, 0.0)))

    def connect_ahead(index: int, starts_at: float) -> None:
        """Connect for the next phase while this one runs."""
        if index + 1 < len(phases):
            ends_in = starts_at + phases[index].seconds - loop.time()
            task = loop.create_task(_warm_later(client, phases[index + 1], ends_in))
            warming.add(task)
            task.add_done_callback(warming.discard)

    cpu = time.thread_time()
    await client.warm(_connections_for(phases[0]))
    run.elapsed = await paced(phases, one, on_phase=connect_ahead)
    await asyncio.gather(*warming)
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


def recovery_seconds(run: Run, normal_p99_ms: float) -> float:
    """From the start of the last phase until latency is normal and stays so for a second:
    every request of ten consecutive 100 ms windows (by scheduled time) answered 201, none
    refused, each window's p99 within twice `normal_p99_ms` (at least + 10 ms). A spike later
    on, on a shared machine, does not count against it."""
    outcomes = run.of(len(run.phases) - 1)
    if not outcomes:
        return float("nan")
    begin = min(o.scheduled for o in outcomes)
    windows: dict[int, list[float]] = {}
    bad: set[int] = set()
    for o in outcomes:
        window = int((o.scheduled - begin) / WINDOW_S)
        windows.setdefault(window, []).append(o.latency * 1000)
        if o.status != 201:
            bad.add(window)
    limit = max(2 * normal_p99_ms, normal_p99_ms + 10)
    normal = [
        w not in bad and percentile(windows.get(w, []), 0.99) <= limit
        for w in range(max(windows) + 1)
    ]
    for start in range(len(normal)):
        if all(normal[start : start + STEADY_WINDOWS]):
            return round(start * WINDOW_S, 2)
    return float(len(normal)) * WINDOW_S
