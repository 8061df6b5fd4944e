"""Open-loop mandate creation that keeps every answer: request i is sent at start + i / rate
whatever the earlier ones do (as scripts/loadgen.py), and its status, body and timing are kept
so a scenario can reconcile answers with the database and the webhook receiver."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp


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
    """Creates mandates at `rps` for `seconds` (or `count` requests) in a background thread."""

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
        async with aiohttp.ClientSession(timeout=timeout) as session:
            start = time.monotonic()
            tasks = []
            for index in range(self.count):
                if self._stop.is_set():
                    break
                delay = start + index / self.rps - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(self._one(session, index, tokens[index], start)))
            await asyncio.gather(*tasks)

    async def _one(
        self, session: aiohttp.ClientSession, index: int, token: str, start: float
    ) -> None:
        sent = time.monotonic()
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
