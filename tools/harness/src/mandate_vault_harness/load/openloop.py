"""The lean shape of the load generator: one fixed POST, cheap enough to offer thousands of
requests a second from the same two cores as the services it loads.

Every CPU microsecond the generator spends is taken from the services it measures, so it does
the least per request: the request's bytes are built once; a timer callback walks the
schedule (`schedule.due_times`) and writes each request when due on an idle keep-alive
connection (HTTP/1.1: one request in flight per connection; a new one is opened when none is
idle); the connection's protocol parses the answer with httptools, records the outcome and
puts the connection back. No task, future or timer a request: a sweep every `SWEEP_S` ends
requests that outlived the target's timeout. At ~3,400 req/s against the api at 200 % this
costs ~38 us of CPU a request (kernel included); through `KeepAliveClient`, a task a request,
it cost ~57 us, and wrk ~22 us in its closed loop.

The generator measures its own CPU (`cpu_seconds`, the thread's) and how late it sent (`lag`):
if it cannot keep up, the figures say so rather than quietly offering less.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final, cast

import httptools
import uvloop
from yarl import URL

from mandate_vault_harness.load.schedule import (
    BATCH_S,
    LEAD_S,
    Phase,
    due_times,
    full_collections_held_off,
    phase_starts,
)

REFUSAL_MARK: Final = b'"overloaded"'  # the error code of an admission-control refusal
WINDOW_S: Final = 0.1  # recovery is judged on windows of requests this long (by scheduled time)
STEADY_WINDOWS: Final = 10  # ... and counts once this many windows in a row are normal
SWEEP_S: Final = 0.25  # how often requests past their timeout are looked for
IDLE_S: Final = 4.0  # idle connections older than this are dropped (uvicorn closes them at 5 s)
CONNECT_AT_ONCE: Final = 32  # connections opened together (the server's accept queue)


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


class _Line(asyncio.Protocol):
    """One keep-alive connection of the generator, with at most one request in flight."""

    def __init__(self, generator: _Generator) -> None:
        self._generator = generator
        self._parser = httptools.HttpResponseParser(self)
        self._chunks: list[bytes] = []
        self.transport: asyncio.Transport | None = None
        self.request: tuple[int, float, float] | None = None  # phase, offset, loop time sent
        self.idle_since = 0.0
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self.close()

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)

    def on_message_complete(self) -> None:
        body = b"".join(self._chunks)
        self._chunks = []
        if not self._parser.should_keep_alive():
            self.close()  # before `answered`, which would send the next request on it
        self._generator.answered(self, self._parser.get_status_code(), body)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._generator.lost(self)

    def send(self, request: bytes, phase: int, offset: float, now: float) -> None:
        assert self.transport is not None
        self.request = (phase, offset, now)
        self.transport.write(request)

    def close(self) -> None:
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.close()


class _Generator:
    """Sends `phases` of `target`'s request on schedule and keeps every outcome in `run`."""

    def __init__(self, target: Target, phases: Sequence[Phase]) -> None:
        self.loop = asyncio.get_running_loop()
        self.target = target
        self.run = Run(phases)
        url = URL(target.base_url)
        self._host, self._port = url.host or "127.0.0.1", url.port or 80
        self._request = _request_bytes(f"{self._host}:{self._port}", target)
        self._schedule: Iterator[tuple[int, int, float]] = due_times(phases)
        self._next = next(self._schedule, None)
        self._idle: deque[_Line] = deque()
        self._busy: set[_Line] = set()
        self._backlog: deque[tuple[int, float]] = deque()  # due, waiting for a connection
        self._connecting = 0
        self._start = 0.0
        self._finished = self.loop.create_future()

    async def drive(self) -> None:
        await self.warm(_connections_for(self.run.phases[0]))
        self._start = self.loop.time() + LEAD_S
        for phase, begins in zip(
            self.run.phases[1:], phase_starts(self.run.phases)[1:], strict=True
        ):
            self.loop.call_at(self._start + begins - 1.0, self._warm_soon, phase)
        self.loop.call_at(self._start, self._tick)
        sweeper = self.loop.call_later(SWEEP_S, self._sweep)
        try:
            await self._finished
        finally:
            sweeper.cancel()
        self.run.elapsed = self.loop.time() - self._start
        for line in [*self._idle, *self._busy]:
            line.close()

    # --- sending ---
    def _tick(self) -> None:
        now = self.loop.time()
        while self._next is not None and self._start + self._next[2] <= now + BATCH_S:
            phase, _, offset = self._next
            self._send(phase, offset, now)
            self._next = next(self._schedule, None)
        if self._next is not None:
            self.loop.call_at(self._start + self._next[2], self._tick)
        else:
            self._finish_if_done()

    def _send(self, phase: int, offset: float, now: float) -> None:
        line = self._idle_line(now)
        if line is None:
            self._backlog.append((phase, offset))
            self._connect(1)
            return
        self._busy.add(line)
        line.send(self._request, phase, offset, now)

    def _idle_line(self, now: float) -> _Line | None:
        while self._idle:
            line = self._idle.pop()  # the most recently idle: the others may time out
            if not line.closed and now - line.idle_since < IDLE_S:
                return line
            line.close()
        return None

    # --- answers ---
    def answered(self, line: _Line, status: int, body: bytes) -> None:
        if line.request is None:  # past its timeout: already counted
            line.close()
            return
        refused = status == 503 and REFUSAL_MARK in body
        self._record(line, status, refused)
        self._release(line)

    def lost(self, line: _Line) -> None:
        if line.request is not None:
            self._record(line, 0, False)
        self._busy.discard(line)
        self._finish_if_done()

    def _record(self, line: _Line, status: int, refused: bool) -> None:
        assert line.request is not None
        phase, offset, sent = line.request
        line.request = None
        at = self._start + offset
        # from the due time; from the send when it went late (the lag is reported apart)
        latency = self.loop.time() - max(at, sent)
        self.run.outcomes.append(
            Outcome(phase, offset, latency, status, refused, max(sent - at, 0))
        )

    def _release(self, line: _Line) -> None:
        self._busy.discard(line)
        if line.closed:
            self._finish_if_done()
            return
        now = self.loop.time()
        if self._backlog:
            phase, offset = self._backlog.popleft()
            self._busy.add(line)
            line.send(self._request, phase, offset, now)
            return
        line.idle_since = now
        self._idle.append(line)
        self._finish_if_done()

    def _sweep(self) -> None:
        deadline = self.loop.time() - self.target.timeout
        for line in [line for line in self._busy if line.request and line.request[2] < deadline]:
            self._record(line, 0, False)
            self._busy.discard(line)
            line.close()
        self._finish_if_done()
        if not self._finished.done():
            self.loop.call_later(SWEEP_S, self._sweep)

    def _finish_if_done(self) -> None:
        quiet = not self._busy and not self._backlog and not self._connecting
        if self._next is None and quiet and not self._finished.done():
            self._finished.set_result(None)

    # --- connections ---
    async def warm(self, count: int) -> None:
        """Open connections until `count` are idle, `CONNECT_AT_ONCE` at a time: a step up in
        load is then not a connection storm (whose overflowing accept queue would add SYN
        retransmits of 1 s to the figures)."""
        while len(self._idle) < count:
            batch = min(count - len(self._idle), CONNECT_AT_ONCE)
            lines = await asyncio.gather(*(self._open() for _ in range(batch)))
            now = self.loop.time()
            for line in lines:
                line.idle_since = now
                self._idle.appendleft(line)  # behind the warm ones: those are reused first

    def _warm_soon(self, phase: Phase) -> None:
        self.loop.create_task(self._warm_quietly(_connections_for(phase)))

    async def _warm_quietly(self, count: int) -> None:
        with contextlib.suppress(OSError):
            await self.warm(count)

    def _connect(self, count: int) -> None:
        self._connecting += count
        for _ in range(count):
            self.loop.create_task(self._connect_one())

    async def _connect_one(self) -> None:
        try:
            line: _Line | None = await self._open()
        except OSError:
            line = None
        self._connecting -= 1
        if line is not None:
            self._release(line)
            return
        if self._backlog:  # the request that asked for the connection gets no answer
            phase, offset = self._backlog.popleft()
            lag = self.loop.time() - (self._start + offset)
            self.run.outcomes.append(Outcome(phase, offset, lag, 0, False, lag))
        self._finish_if_done()

    async def _open(self) -> _Line:
        _, line = await self.loop.create_connection(lambda: _Line(self), self._host, self._port)
        return line


def _request_bytes(host: str, target: Target) -> bytes:
    headers = {"Host": host, **target.headers}
    lines = [f"POST {target.path} HTTP/1.1"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append(f"Content-Length: {len(target.body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + target.body


def _connections_for(phase: Phase) -> int:
    """Connections a phase keeps busy when answers take up to ~0.25 s (HTTP/1.1: one request
    in flight per connection); opened ahead of it."""
    return max(8, min(4096, int(phase.rate * 0.25)))


async def _drive(target: Target, phases: Sequence[Phase]) -> Run:
    cpu = time.thread_time()
    generator = _Generator(target, phases)
    with full_collections_held_off():
        await generator.drive()
    generator.run.cpu_seconds = time.thread_time() - cpu
    return generator.run


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
