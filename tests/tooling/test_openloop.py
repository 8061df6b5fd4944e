"""The lean open-loop generator (`load.openloop`) against a real HTTP server on a socket: one
outcome per scheduled request, whatever the server does with it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httptools
import pytest

from mandate_vault_harness.load import Phase, Target, run_open_loop
from mandate_vault_harness.net import free_port

OVERLOADED = b'{"error": "overloaded"}'


class _Server(asyncio.Protocol):
    """Answers each request by `mode`: ``ok`` (201), ``alternate`` (503s, every other one an
    admission refusal), ``close`` (201 and the connection closed), ``stall`` (never)."""

    def __init__(self, mode: str, seen: list[int]) -> None:
        self.mode, self.seen = mode, seen
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        assert self.transport is not None
        self.seen.append(1)
        if self.mode == "stall":
            return
        status, body = b"201 Created", b"{}"
        if self.mode == "alternate":
            status = b"503 Service Unavailable"
            body = OVERLOADED if len(self.seen) % 2 else b'{"error": "verifier_unavailable"}'
        close = self.mode == "close"
        head = b"HTTP/1.1 %s\r\nContent-Length: %d\r\n%s\r\n" % (
            status, len(body), b"Connection: close\r\n" if close else b""
        )  # fmt: skip
        self.transport.write(head + body)
        if close:
            self.transport.close()


@contextmanager
def serving(mode: str) -> Iterator[tuple[str, list[int]]]:
    port, seen = free_port(), list[int]()
    loop = asyncio.new_event_loop()
    ready, stop = threading.Event(), asyncio.Event()

    async def serve() -> None:
        server = await loop.create_server(lambda: _Server(mode, seen), "127.0.0.1", port)
        ready.set()
        async with server:
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(5)
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(5)
        loop.close()


def _target(url: str, timeout: float = 5.0) -> Target:
    return Target(url, "/work", b'{"n": 1}', {"Content-Type": "application/json"}, timeout)


def test_every_scheduled_request_has_one_outcome_in_its_phase() -> None:
    with serving("ok") as (url, seen):
        run = run_open_loop(_target(url), [Phase("a", 200, 0.1), Phase("b", 100, 0.1)])
    assert [o.phase for o in sorted(run.outcomes, key=lambda o: o.scheduled)] == [0] * 20 + [1] * 10
    assert {o.status for o in run.outcomes} == {201}
    assert len(seen) == 30
    assert run.elapsed > 0
    assert run.cpu_seconds > 0


def test_admission_refusals_are_told_apart_from_other_503s() -> None:
    with serving("alternate") as (url, _):
        run = run_open_loop(_target(url), [Phase("a", 100, 0.2)])
    assert {o.status for o in run.outcomes} == {503}
    assert sum(o.refused for o in run.outcomes) == 10


def test_a_server_closing_every_connection_still_gets_every_request() -> None:
    with serving("close") as (url, seen):
        run = run_open_loop(_target(url), [Phase("a", 100, 0.3)])
    assert [o.status for o in run.outcomes] == [201] * 30
    assert len(seen) == 30


def test_requests_past_the_timeout_end_without_an_answer() -> None:
    with serving("stall") as (url, seen):
        run = run_open_loop(_target(url, timeout=0.3), [Phase("a", 50, 0.2)])
    assert [o.status for o in run.outcomes] == [0] * 10
    assert len(seen) == 10


def test_nothing_listening_fails_before_the_schedule_starts() -> None:
    with pytest.raises(ConnectionRefusedError):
        run_open_loop(_target(f"http://127.0.0.1:{free_port()}"), [Phase("a", 10, 0.1)])
