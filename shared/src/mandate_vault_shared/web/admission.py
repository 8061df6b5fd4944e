"""Admission control: bounded concurrency with a short queueing deadline, per budget.

Every request except health, readiness and metrics belongs to one *budget*, chosen by method
and path (e.g. the api's login, whose Argon2 hashing is expensive, has its own small one; the
rest share ``default``). A budget runs at most `limit` requests at once. Others wait in a FIFO
queue, each with a deadline to *start*. How long depends on the queue, as in CoDel and
Facebook's adaptive queueing: a queue that formed in the last `standing_queue_ms` is a burst
(a pause of the event loop, a client's retry wave) and its requests may wait up to
`queue_timeout_ms`, so a burst is absorbed; a queue that has not been empty for that long,
while no request it let start had waited less than `standing_wait_ms` (CoDel's target: a
queue that moves that fast is busy, not overloaded), is standing - the process is overloaded
- and new requests may wait only `overload_queue_timeout_ms`. It stays standing until no
request has found the budget full for `standing_queue_ms`. A request is refused at once - 503
with ``Retry-After`` in the one error shape (``{"error": "overloaded", ...}``), counted in
``requests_shed_total{service, endpoint, reason}`` - when:

- ``queue_full``: `queue_size` requests already wait;
- ``expected_wait``: under a standing queue, at the rate requests have been finishing, the
  ones ahead of it would not all have started before its deadline (so it is refused now, not
  after waiting in vain);
- ``deadline``: it waited and its deadline passed after all.

So an overloaded process answers the excess in microseconds and keeps the latency of what it
admits bounded, instead of letting everything queue until a timeout (congestion collapse),
while a process with room to spare does not refuse a request because of a short hiccup.

The limit adapts (AIMD, as Netflix's concurrency-limits does) between `min_concurrency` and
`max_concurrency`: an admitted request that ends slower than `latency_threshold_ms` or with a
503 (a dependency is down or shedding itself) cuts it by 10 %, at most once per 100 ms; every
other one that ended while the budget was at least half used raises it by one. A stalled
dependency thus shrinks the number of requests stuck on it to the minimum, and the limit
recovers within a few hundred requests once it answers again. `adaptive = false` pins it at the
maximum.

`AdmissionMiddleware` applies it; `build_app` installs it outside every other middleware, so a
refusal is cheap (under overload refusals outnumber what is admitted). In a running service the
HTTP server answers the refusals that need no wait before the request even has a task
(`web/edge.py`, through `AdmissionControl.refuse_now`); the middleware admits, queues, and
refuses at the deadline. A refusal has a request id and an ``http_requests_total`` sample like
any answer, but no span, no per-request log (under overload that would be thousands of lines a
second) and no ``errors_total``: refusals are counted in ``requests_shed_total``. The time an
admitted request waited counts in its duration.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

import orjson
from pydantic import BaseModel, Field
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mandate_vault_shared.telemetry import get_logger, names
from mandate_vault_shared.telemetry.instruments import Counter, Labels, Metrics
from mandate_vault_shared.telemetry.metrics import HttpMetrics
from mandate_vault_shared.web.request_id import REQUEST_ID_HEADER, incoming_request_id

REASONS: Final = ("queue_full", "expected_wait", "deadline")
ARRIVED_STATE_KEY: Final = "arrived_at"  # scope["state"][...]: perf_counter() at arrival
ERROR_TYPE: Final = "Overloaded"  # the error.type of a refusal in the HTTP metrics
ERROR_CODE: Final = "overloaded"
DETAIL: Final = "The service is at capacity; retry after the delay in Retry-After."
DEFAULT_BUDGET: Final = "default"
_DECREASE_INTERVAL_S: Final = 0.1
_BACKOFF: Final = 0.9
_RATE_HALF_LIFE_S: Final = 0.5
_LOG_INTERVAL_S: Final = 10.0
_SEEN_PATHS: Final = 1024
EVENT_LOAD_SHEDDING: Final = "load_shedding"

log = get_logger(__name__)


class BudgetSettings(BaseModel):
    """One budget's knobs (nested settings, e.g. ``API_ADMISSION__MAX_CONCURRENCY``)."""

    enabled: bool = True
    # Defaults from `make bench` on 2 cores at 200 % of capacity: 16 at once keep the CPU busy
    # (goodput at capacity); under a standing queue a wait of at most 2 ms to start keeps every
    # refusal fast (a refusal at the deadline takes the deadline: with 50 ms the refusal p99 was
    # 183 ms), while 50 ms for a fresh queue absorbs bursts that a 2 ms deadline refused.
    max_concurrency: int = Field(16, ge=1, le=10_000)
    min_concurrency: int = Field(8, ge=1, le=10_000)
    queue_size: int = Field(128, ge=0, le=100_000)
    queue_timeout_ms: float = Field(50.0, ge=0, le=60_000)
    overload_queue_timeout_ms: float = Field(2.0, ge=0, le=60_000)
    standing_queue_ms: float = Field(100.0, ge=0, le=60_000)
    # At 75-90 % of capacity in `make bench`, queues of a few requests that each started
    # within 1-4 ms lasted over 100 ms and counted as standing: 1-3 % of the requests were
    # refused below capacity. A queue is standing only if its requests waited this long.
    standing_wait_ms: float = Field(5.0, ge=0, le=60_000)
    adaptive: bool = True
    latency_threshold_ms: float = Field(1000.0, gt=0)
    retry_after_seconds: int = Field(1, ge=1, le=3600)


class _Ewma:
    """Requests finished per second, smoothed over about `_RATE_HALF_LIFE_S`."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._last = clock()
        self._pending = 0
        self.rate = 0.0

    def tick(self) -> None:
        self._pending += 1
        now = self._clock()
        elapsed = now - self._last
        if elapsed >= 0.01:  # fold in batches: cheaper, and steadier than per event
            weight = 0.5 ** (elapsed / _RATE_HALF_LIFE_S)
            self.rate = weight * self.rate + (1 - weight) * (self._pending / elapsed)
            self._last, self._pending = now, 0


@dataclass
class Budget:
    name: str
    settings: BudgetSettings
    clock: Callable[[], float] = time.monotonic
    in_flight: int = 0
    queued: int = 0
    limit: float = field(init=False)
    _waiters: deque[tuple[asyncio.Future[None], float]] = field(default_factory=deque)
    _finished: _Ewma = field(init=False)
    _last_decrease: float = float("-inf")
    standing: bool = False  # not empty nor fast-moving for `standing_queue_ms`: overload
    _empty_at: float = float("-inf")  # when the queue was last seen empty or moving fast
    _full_at: float = float("-inf")  # when a request last found the budget full

    def __post_init__(self) -> None:
        self.limit = float(self.settings.max_concurrency)
        self._finished = _Ewma(self.clock)

    async def acquire(self) -> str | None:
        """None once admitted (call `release` when done), else why the request is refused."""
        if self._has_room():
            self.in_flight += 1
            return None
        refusal = self.refusal_now()
        if refusal is not None:
            return refusal
        settings = self.settings
        timeout_ms = (
            settings.overload_queue_timeout_ms if self.standing else settings.queue_timeout_ms
        )
        return await self._wait(timeout_ms / 1000)

    def _has_room(self) -> bool:
        return self.in_flight < int(self.limit) and not self.queued

    def refusal_now(self) -> str | None:
        """Why a request arriving now would be refused without waiting (``queue_full``,
        ``expected_wait``), else None: it would start, or wait for its turn."""
        if self._has_room():
            return None
        if self.queued >= self.settings.queue_size:
            self._full_at = self.clock()
            return "queue_full"
        if not self._standing_queue():
            return None
        rate = self._finished.rate
        if rate > 0 and (self.queued + 1) / rate > self.settings.overload_queue_timeout_ms / 1000:
            return "expected_wait"
        return None

    def _standing_queue(self) -> bool:
        """Called when a request finds the budget full: is the queue standing (overload) or a
        burst? Once standing, it stays so until requests stop finding the budget full."""
        now = self.clock()
        if not self.queued:
            self._empty_at = now
        window = self.settings.standing_queue_ms / 1000
        if self.standing:
            self.standing = now - self._full_at < window
        else:
            self.standing = now - self._empty_at >= window
        self._full_at = now
        return self.standing

    async def _wait(self, deadline: float) -> str | None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((waiter, self.clock()))
        self.queued += 1
        try:
            async with asyncio.timeout(deadline):
                # shielded: a timeout must not cancel a slot that was just handed over
                await asyncio.shield(waiter)
        except TimeoutError:
            if waiter.done():  # the slot was handed over just as the deadline passed
                return None
            self._give_up(waiter)
            return "deadline"
        except BaseException:  # cancelled while waiting: never leak a slot
            if waiter.done():
                self.in_flight -= 1
                self._hand_over()
            else:
                self._give_up(waiter)
            raise
        return None

    def _give_up(self, waiter: asyncio.Future[None]) -> None:
        waiter.cancel()  # left in the queue, skipped when its turn comes
        self.queued -= 1
        self._note_if_empty()

    def _note_if_empty(self) -> None:
        if not self.queued:
            self._empty_at = self.clock()

    def release(self, seconds: float, overloaded: bool) -> None:
        """An admitted request ended after `seconds`; `overloaded`: it ended with a 503."""
        busy = self.in_flight * 2 >= self.limit
        self.in_flight -= 1
        self._finished.tick()
        if self.settings.adaptive:
            self._adapt(seconds, overloaded, busy)
        self._hand_over()

    def _adapt(self, seconds: float, overloaded: bool, busy: bool) -> None:
        settings = self.settings
        if overloaded or seconds * 1000 > settings.latency_threshold_ms:
            now = self.clock()
            if now - self._last_decrease >= _DECREASE_INTERVAL_S:
                self._last_decrease = now
                self.limit = max(float(settings.min_concurrency), self.limit * _BACKOFF)
        elif busy:
            self.limit = min(float(settings.max_concurrency), self.limit + 1)

    def _hand_over(self) -> None:
        while self._waiters and self.in_flight < int(self.limit):
            waiter, queued_at = self._waiters.popleft()
            if waiter.done():  # cancelled at its deadline
                continue
            self.queued -= 1
            self.in_flight += 1
            waiter.set_result(None)
            now = self.clock()
            if not self.queued or now - queued_at < self.settings.standing_wait_ms / 1000:
                self._empty_at = now


@dataclass(frozen=True, slots=True)
class Refusal:
    """A refusal's answer: 503, these headers, this body."""

    headers: list[tuple[bytes, bytes]]
    body: bytes


@dataclass(frozen=True)
class Route:
    """Requests that go to a budget other than the default."""

    method: str
    path: str
    budget: str


class AdmissionControl:
    """The budgets of one process, and what is exempt from them."""

    def __init__(
        self,
        service: str,
        budgets: Mapping[str, BudgetSettings],
        metrics: Metrics,
        *,
        routes: Iterable[Route] = (),
        exempt: Iterable[str] = (),
    ) -> None:
        self.service = service
        self.budgets = {
            name: Budget(name, settings) for name, settings in budgets.items() if settings.enabled
        }
        self._routes = {(route.method, route.path): route.budget for route in routes}
        self._exempt = frozenset(exempt)
        self._shed: Counter = metrics.counter(
            names.REQUESTS_SHED_TOTAL,
            "Requests refused by admission control (503 + Retry-After)",
            (names.LABEL_SERVICE, names.LABEL_ENDPOINT, names.LABEL_REASON),
        )
        self._unlogged = 0
        self._logged_at = float("-inf")
        self.templates = _Templates()
        # Where refusals are counted like any answer (``http_requests_total``, the durations);
        # `build_app` sets it when telemetry is on.
        self.http: HttpMetrics | None = None

    def learn_routes(self, paths: Iterable[str]) -> None:
        """The route templates refusals are labelled with (e.g. the OpenAPI paths). Their
        series start at zero, so rates and ratios exist before the first refusal."""
        templates = [path for path in paths if path not in self._exempt]
        self.templates.learn(templates)
        for template in templates:
            for reason in REASONS:
                self._shed.add((self.service, template, reason), 0.0)

    def refuse_now(self, scope: Scope) -> Refusal | None:
        """The answer to an HTTP request its budget refuses without waiting, counted; else None
        (exempt, or it would start or wait its turn). For the HTTP server, before a task exists."""
        budget = self.budget_for(scope["method"], scope["path"])
        if budget is None:
            return None
        reason = budget.refusal_now()
        return None if reason is None else self.refusal(scope, budget, reason, time.perf_counter())

    def refusal(self, scope: Scope, budget: Budget, reason: str, arrived: float) -> Refusal:
        """The 503 for a refused request, in the one error shape, counted in
        ``requests_shed_total`` and (with `http`) in the HTTP metrics."""
        endpoint = self.templates.endpoint(scope["path"])
        self.refused(budget, endpoint, reason)
        request_id = incoming_request_id(scope)
        body = orjson.dumps({"error": ERROR_CODE, "detail": DETAIL, "request_id": request_id})
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(budget.settings.retry_after_seconds).encode()),
            (REQUEST_ID_HEADER, request_id.encode("latin-1")),
        ]
        if self.http is not None:
            self.http.record_request(
                scope["method"],
                endpoint,
                503,
                time.perf_counter() - arrived,
                scheme=scope.get("scheme", "http"),
                error_type=ERROR_TYPE,
            )
        return Refusal(headers, body)

    def refused(self, budget: Budget, endpoint: str, reason: str) -> None:
        """Count a refusal; log a summary at most every `_LOG_INTERVAL_S` (never one a request)."""
        self._shed.add((self.service, endpoint, reason))
        self._unlogged += 1
        now = time.monotonic()
        if now - self._logged_at >= _LOG_INTERVAL_S:
            log.warning(
                EVENT_LOAD_SHEDDING,
                refused=self._unlogged,
                budget=budget.name,
                limit=math.floor(budget.limit),
                in_flight=budget.in_flight,
                queued=budget.queued,
                reason=reason,
            )
            self._logged_at, self._unlogged = now, 0

    def budget_for(self, method: str, path: str) -> Budget | None:
        """The request's budget, or None when it is exempt or its budget is disabled."""
        if path in self._exempt:
            return None
        return self.budgets.get(self._routes.get((method, path), DEFAULT_BUDGET))


class _Templates:
    """Route templates for the ``endpoint`` label of refusals, matched against the raw path
    (admission runs before routing). `learn` them once the app's routes are known."""

    def __init__(self) -> None:
        self._compiled: list[tuple[re.Pattern[str], str]] = []
        self._seen: dict[str, str] = {}  # path -> template: refusals repeat a few paths

    def learn(self, paths: Iterable[str]) -> None:
        self._compiled = [(compile_path(path)[0], path) for path in paths]
        self._seen.clear()

    def endpoint(self, path: str) -> str:
        template = self._seen.get(path)
        if template is None:
            template = self._match(path)
            if len(self._seen) >= _SEEN_PATHS:  # paths come from clients: keep it bounded
                self._seen.clear()
            self._seen[path] = template
        return template

    def _match(self, path: str) -> str:
        for pattern, template in self._compiled:
            if pattern.match(path):
                return template
        return names.UNMATCHED_ENDPOINT


class AdmissionMiddleware:
    """Applies `control` to every request. `build_app` installs it around the whole middleware
    stack - outside the error handler, Sentry's middleware and the telemetry middleware - so a
    refusal costs what the answer itself costs: under overload refusals outnumber admitted
    requests and their cost comes out of the work admitted. A refusal is still counted in
    ``http_requests_total`` (and the duration histograms) when the control has `http`, and in
    ``requests_shed_total``; it has no span."""

    def __init__(self, app: ASGIApp, control: AdmissionControl):
        self.app = app
        self.control = control

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        budget = (
            self.control.budget_for(scope["method"], scope["path"])
            if scope["type"] == "http"
            else None
        )
        if budget is None:
            await self.app(scope, receive, send)
            return
        arrived = time.perf_counter()
        refusal = await budget.acquire()
        if refusal is not None:
            await self._refuse(scope, send, budget, refusal, arrived)
            return
        scope.setdefault("state", {})[ARRIVED_STATE_KEY] = arrived
        admitted = time.monotonic()
        status = 500

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            budget.release(time.monotonic() - admitted, status == 503)

    async def _refuse(
        self, scope: Scope, send: Send, budget: Budget, reason: str, arrived: float
    ) -> None:
        refusal = self.control.refusal(scope, budget, reason, arrived)
        await send({"type": "http.response.start", "status": 503, "headers": refusal.headers})
        await send({"type": "http.response.body", "body": refusal.body})


def observe_budgets(control: AdmissionControl, metrics: Metrics) -> None:
    """Gauges of every budget's limit, requests in flight and requests waiting, read only when
    metrics are collected: ``admission_concurrency_limit{service, budget}``, ...."""
    readings: dict[str, Callable[[Budget], float]] = {
        names.ADMISSION_CONCURRENCY_LIMIT: lambda budget: float(math.floor(budget.limit)),
        names.ADMISSION_IN_FLIGHT: lambda budget: float(budget.in_flight),
        names.ADMISSION_QUEUED: lambda budget: float(budget.queued),
    }
    for name, read in readings.items():

        def observe(read: Callable[[Budget], float] = read) -> list[tuple[Labels, float]]:
            return [((control.service, b.name), read(b)) for b in control.budgets.values()]

        metrics.observe(name, _GAUGES[name], (LABEL_SERVICE, LABEL_BUDGET), observe)


LABEL_SERVICE, LABEL_BUDGET = names.LABEL_SERVICE, names.LABEL_BUDGET
_GAUGES: Final = {
    names.ADMISSION_CONCURRENCY_LIMIT: "Requests a budget admits at once now (adaptive)",
    names.ADMISSION_IN_FLIGHT: "Requests of a budget being served now",
    names.ADMISSION_QUEUED: "Requests of a budget waiting to start now",
}
