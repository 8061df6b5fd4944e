"""The lean keep-alive client against a real socket server whose behaviour each test scripts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest

from mandate_vault_shared.keepalive import KeepAliveClient, ResponseTooLarge

# (request number on its connection, request body) -> raw answer bytes, or None to answer nothing
Script = Callable[[int, bytes], Awaitable[bytes | None]]


def ok(body: bytes = b"{}", extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%b\r\n%b" % (len(body), extra, body)


@dataclass
class Server:
    port: int = 0
    connections: int = 0
    closed_by_client: int = 0
    bodies: list[bytes] = field(default_factory=list)


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return await reader.readexactly(length)


@asynccontextmanager
async def serve(script: Script) -> AsyncIterator[Server]:
    server = Server()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server.connections += 1
        number = 0
        try:
            while True:
                body = await _read_request(reader)
                server.bodies.append(body)
                number += 1
                answer = await script(number, body)
                if answer is None:  # close without answering
                    break
                writer.write(answer)
                await writer.drain()
        except asyncio.IncompleteReadError as exc:
            server.closed_by_client += not exc.partial
        finally:
            writer.close()

    listener = await asyncio.start_server(handle, "127.0.0.1", 0)
    server.port = listener.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        listener.close()


async def answer_ok(_: int, body: bytes) -> bytes:
    return ok(body)


async def test_requests_reuse_one_connection() -> None:
    async with serve(answer_ok) as server:
        client = KeepAliveClient(f"http://127.0.0.1:{server.port}")
        for n in range(3):
            answer = await client.post("/echo", b"n%d" % n, {"Content-Type": "text/plain"})
            assert (answer.status, answer.body) == (200, b"n%d" % n)
        await client.close()
    assert server.connections == 1


async def test_an_idle_connection_the_server_closed_is_replaced() -> None:
    async def close_after_answering(_: int, body: bytes) -> bytes:
        return ok(body, b"Connection: close\r\n")

    async with serve(close_after_answering) as server:
        client = KeepAliveClient(f"http://127.0.0.1:{server.port}")
        assert (await client.post("/a", b"1", {})).body == b"1"
        assert (await client.post("/a", b"2", {})).body == b"2"
        await client.close()
    assert server.connections == 2


@pytest.mark.parametrize("idempotent", [True, False])
async def test_a_reused_connection_dropped_without_answer_is_retried_only_if_idempotent(
    idempotent: bool,
) -> None:
    async def drop_second(number: int, body: bytes) -> bytes | None:
        return None if number == 2 else ok(body)

    async with serve(drop_second) as server:
        client = KeepAliveClient(f"http://127.0.0.1:{server.port}")
        await client.post("/a", b"first", {})
        if idempotent:
            answer = await client.post("/a", b"again", {}, idempotent=True)
            assert answer.body == b"again"
            assert server.connections == 2
        else:
            with pytest.raises(ConnectionError):
                await client.post("/a", b"again", {})
        await client.close()


async def test_a_timed_out_request_closes_its_connection() -> None:
    late = asyncio.Event()

    async def first_answers_late(_: int, body: bytes) -> bytes:
        if body == b"slow":
            await late.wait()
        return ok(body)

    async with serve(first_answers_late) as server:
        client = KeepAliveClient(f"http://127.0.0.1:{server.port}")
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await client.post("/slow", b"slow", {})
        late.set()  # its late answer must never be taken for the next request's
        assert (await client.post("/fast", b"fast", {})).body == b"fast"
        await client.close()
    assert server.connections == 2


async def test_chunked_answers_are_reassembled_and_oversized_ones_refused() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )

    async def answer(_: int, __: bytes) -> bytes:
        return chunked

    async with serve(answer) as server:
        client = KeepAliveClient(f"http://127.0.0.1:{server.port}")
        assert (await client.post("/c", b"", {})).body == b"hello world"
        small = KeepAliveClient(f"http://127.0.0.1:{server.port}", max_response_bytes=8)
        with pytest.raises(ResponseTooLarge):
            await small.post("/c", b"", {})
        await client.close()
        await small.close()


async def test_unreachable_service_and_header_injection_fail_clearly() -> None:
    async with serve(answer_ok) as server:
        port = server.port
    client = KeepAliveClient(f"http://127.0.0.1:{port}")
    with pytest.raises(ConnectionRefusedError):
        await client.post("/a", b"", {})
    with pytest.raises(ValueError, match="line break"):
        await client.post("/a", b"", {"X-Evil": "a\r\nX-Injected: 1"})
    with pytest.raises(ValueError, match="http"):
        KeepAliveClient("ftp://example.com")
