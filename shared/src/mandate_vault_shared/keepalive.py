"""A lean HTTP/1.1 client for one internal service: keep-alive connections, POST with a byte
body, an answer with its status and body. Used for the api -> jwt-verifier hop.

Why not aiohttp, which the services use for every other outgoing call: on the reference
machine a POST through a shared aiohttp session cost ~80 us of CPU against an instant server
and ~250 us inside the api under load (request objects, header multidicts, cookie handling,
timers, stream readers), about a quarter of a whole create-mandate. This client writes the
request in one buffer and parses the answer with httptools (the parser uvicorn uses): ~10 us.
It does only what an internal hop needs: no redirects, cookies, proxies or compression;
http or https; answers framed by Content-Length or chunked.

Connections are reused most-recently-idle first and dropped after `idle_seconds` idle (shorter
than uvicorn's 5 s keep-alive, so the server rarely closes one under us). A request on a reused
connection that the server had closed is retried once on a new one when the caller says the
request is idempotent. A timeout or any failure closes the connection it happened on.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, cast

import httptools
from yarl import URL

_CRLF: Final = b"\r\n"
DEFAULT_MAX_RESPONSE_BYTES: Final = 1 << 20


class ResponseTooLarge(ConnectionError):
    """The answer exceeded the client's size limit (the connection is dropped)."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes


class _Connection(asyncio.Protocol):
    """One connection; at most one request in flight on it."""

    def __init__(self, max_body: int) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._max_body = max_body
        self._chunks: list[bytes] = []
        self._size = 0
        self._waiter: asyncio.Future[Answer] | None = None
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reusable = True
        self.received = False  # any byte of the current answer
        self.idle_since = time.monotonic()

    # --- asyncio.Protocol ---
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._waiter.done():
            self.close()  # bytes nobody asked for: the stream cannot be trusted any more
            return
        self.received = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionError(f"malformed HTTP answer: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(ConnectionResetError("the server closed the connection"))

    # --- httptools callbacks ---
    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > self._max_body:
            self._fail(ResponseTooLarge(f"the answer exceeds {self._max_body} bytes"))
            return
        self._chunks.append(body)

    def on_message_complete(self) -> None:
        self.reusable = self._parser.should_keep_alive()
        answer = Answer(self._parser.get_status_code(), b"".join(self._chunks))
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(answer)

    # --- the client's side ---
    def send(self, request: bytes) -> asyncio.Future[Answer]:
        assert self.transport is not None
        self._chunks, self._size, self.received = [], 0, False
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return self._waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _fail(self, exc: ConnectionError) -> None:
        self.reusable = False
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)
        if not self.closed:
            self.close()


class KeepAliveClient:
    def __init__(
        self,
        base_url: str,
        *,
        limit: int = 100,
        idle_seconds: float = 4.0,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        url = URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            msg = f"not an http(s) URL: {base_url!r}"
            raise ValueError(msg)
        self.base = url
        self._host, self._port = url.host, url.port or (443 if url.scheme == "https" else 80)
        self._ssl = (ssl_context or ssl.create_default_context()) if url.scheme == "https" else None
        self._host_header = f"Host: {url.host}:{self._port}\r\n".encode("latin-1")
        self._slots = asyncio.Semaphore(limit)
        self._idle: deque[_Connection] = deque()
        self._idle_seconds = idle_seconds
        self._max_body = max_response_bytes

    async def post(
        self,
        path: str,
        body: bytes,
        headers: Mapping[str, str],
        *,
        idempotent: bool = False,
    ) -> Answer:
        """POST `body` to `path`; raises ConnectionError/OSError when the service cannot be
        reached or the connection breaks. Bound it with `asyncio.timeout`: a cancelled request
        closes its connection."""
        request = self._request(path, body, headers)
        async with self._slots:
            connection, reused = await self._connection()
            try:
                return await self._exchange(connection, request)
            except ConnectionError:
                if not (idempotent and reused and not connection.received):
                    raise
            # the server had closed the idle connection under us: once more, on a new one
            connection, _ = await self._connection(fresh=True)
            return await self._exchange(connection, request)

    async def warm(self, count: int, *, at_once: int = 32) -> None:
        """Open connections until `count` are idle (a few at a time, so the server's accept
        queue never overflows): callers that know a burst is coming pay the connects first."""
        missing = count - len(self._idle)
        while missing > 0:
            batch = min(missing, at_once)
            opened = await asyncio.gather(
                *(self._connection(fresh=True) for _ in range(batch)), return_exceptions=True
            )
            for item in opened:
                if isinstance(item, BaseException):
                    raise item
                item[0].idle_since = time.monotonic()
                self._idle.appendleft(item[0])  # behind the warm ones: the LIFO reuses those
            missing -= batch

    async def close(self) -> None:
        while self._idle:
            self._idle.pop().close()

    def _request(self, path: str, body: bytes, headers: Mapping[str, str]) -> bytes:
        lines = [f"POST {path} HTTP/1.1\r\n".encode("latin-1"), self._host_header]
        for name, value in headers.items():
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                msg = f"header {name!r} contains a line break"
                raise ValueError(msg)
            lines.append(f"{name}: {value}\r\n".encode("latin-1"))
        lines.append(b"Content-Length: %d\r\n\r\n" % len(body))
        lines.append(body)
        return b"".join(lines)

    async def _connection(self, *, fresh: bool = False) -> tuple[_Connection, bool]:
        now = time.monotonic()
        while self._idle and not fresh:
            connection = self._idle.pop()
            if not connection.closed and now - connection.idle_since < self._idle_seconds:
                return connection, True
            connection.close()
        _, connection = await asyncio.get_running_loop().create_connection(
            lambda: _Connection(self._max_body), self._host, self._port, ssl=self._ssl
        )
        return connection, False

    async def _exchange(self, connection: _Connection, request: bytes) -> Answer:
        try:
            answer = await connection.send(request)
        except BaseException:
            connection.close()  # a timeout or a failure: its state is unknown
            raise
        if connection.reusable and not connection.closed:
            connection.idle_since = time.monotonic()
            self._idle.append(connection)
        else:
            connection.close()
        return answer
