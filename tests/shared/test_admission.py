"""Admission control: budgets, refusals in the one error shape, exemptions, adaptation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI

from mandate_vault_shared.telemetry.fast_metrics import FastMetrics
from mandate_vault_shared.web.admission import (
    DEFAULT_BUDGET,
    AdmissionControl,
    AdmissionMiddleware,
    Budget,
    BudgetSettings,
    Route,
)
from mandate_vault_shared.web.middleware import QUIET_PATHS


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def budget(**settings: object) -> Budget:
    return Budget("test", BudgetSettings.model_validate(settings))


def one_at_a_time(clock: Clock) -> Budget:
    """One request at a time; a burst may wait 5 s, a standing queue 1 ms; standing after
    100 ms of requests that waited 5 ms or more; no adaptation."""
    settings = BudgetSettings(
        max_concurrency=1,
        queue_timeout_ms=5000,
        overload_queue_timeout_ms=1,
        standing_queue_ms=100,
        standing_wait_ms=5,
        adaptive=False,
    )
    return Budget("one", settings, clock=clock)


async def test_a_full_budget_queues_then_refuses_when_the_queue_is_full() -> None:
    b = budget(max_concurrency=2, queue_size=1, queue_timeout_ms=5000)
    assert await b.acquire() is None
    assert await b.acquire() is None
    waiting = asyncio.create_task(b.acquire())
    await asyncio.sleep(0)
    assert (b.in_flight, b.queued) == (2, 1)
    assert await b.acquire() == "queue_full"
    b.release(0.01, overloaded=False)
    assert await waiting is None  # the slot went to the request that waited
    assert (b.in_flight, b.queued) == (2, 0)


async def test_a_request_that_cannot_start_before_its_deadline_is_refused() -> None:
    b = budget(max_concurrency=1, queue_size=10, queue_timeout_ms=20)
    assert await b.acquire() is None
    assert await b.acquire() == "deadline"
    assert (b.in_flight, b.queued) == (1, 0)
    b.release(0.01, overloaded=False)
    assert await b.acquire() is None


async def test_under_a_standing_queue_refused_at_once_when_the_queue_cannot_drain_in_time() -> None:
    b = budget(max_concurrency=1, queue_size=100, overload_queue_timeout_ms=50, standing_queue_ms=0)
    b._finished.rate = 10.0  # ten requests a second finish: one more waiting means 100 ms
    assert await b.acquire() is None
    assert await b.acquire() == "expected_wait"
    assert b.queued == 0


async def test_a_fresh_queue_waits_the_long_deadline_a_standing_one_the_short() -> None:
    clock = Clock()
    b = one_at_a_time(clock)
    b._finished.rate = 100.0  # one more waiting means 10 ms: too long under a standing queue
    assert await b.acquire() is None
    burst = [asyncio.create_task(b.acquire()) for _ in range(3)]
    await asyncio.sleep(0)
    assert (b.queued, b.standing) == (3, False)  # a burst: they wait, none is refused
    clock.now += 0.15  # the queue has not been empty since
    assert await b.acquire() == "expected_wait"
    assert b.standing
    for _ in burst:
        b.release(0.01, overloaded=False)
    assert [await task for task in burst] == [None, None, None]
    clock.now += 0.05  # the budget still full, the queue empty: still standing
    b._finished.rate = 10_000.0  # it may wait, but only the short deadline
    assert await b.acquire() == "deadline"
    assert b.standing
    clock.now += 0.15  # nobody found the budget full for a while: a new queue is a burst
    waiting = asyncio.create_task(b.acquire())
    await asyncio.sleep(0)
    assert (b.queued, b.standing) == (1, False)
    b.release(0.01, overloaded=False)
    assert await waiting is None


async def test_a_queue_whose_requests_start_quickly_is_never_standing() -> None:
    clock = Clock()
    b = one_at_a_time(clock)
    b._finished.rate = 100.0  # one more waiting means 10 ms: refused, were the queue standing
    assert await b.acquire() is None
    started = [asyncio.create_task(b.acquire())]
    for _ in range(60):  # 120 ms, never an empty queue, every request waiting 2-4 ms
        started.append(asyncio.create_task(b.acquire()))
        await asyncio.sleep(0)
        assert not b.standing
        clock.now += 0.002
        b.release(0.002, overloaded=False)
    assert b.queued == 1
    assert [await task for task in started[:-1]] == [None] * 60
    slow = asyncio.create_task(b.acquire())  # this one waits 150 ms before it starts
    await asyncio.sleep(0)
    clock.now += 0.15
    b.release(0.15, overloaded=False)
    assert await b.acquire() == "expected_wait"  # a queue that stopped moving is standing
    assert b.standing
    b.release(0.01, overloaded=False)
    assert [await started[-1], await slow] == [None, None]


async def test_a_cancelled_waiter_leaks_no_slot() -> None:
    b = budget(max_concurrency=1, queue_size=10, queue_timeout_ms=5000)
    assert await b.acquire() is None
    waiting = asyncio.create_task(b.acquire())
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    b.release(0.01, overloaded=False)
    assert (b.in_flight, b.queued) == (0, 0)
    assert await b.acquire() is None


async def test_the_limit_backs_off_on_slow_or_overloaded_answers_and_recovers() -> None:
    clock = Clock()
    b = Budget(
        "aimd",
        BudgetSettings(max_concurrency=20, min_concurrency=4, latency_threshold_ms=100),
        clock=clock,
    )
    for _ in range(40):  # a stalled dependency: every answer slow, a 503 or late
        clock.now += 0.2
        assert await b.acquire() is None
        b.release(3.0, overloaded=True)
    assert b.limit == 4
    for _ in range(30):  # quick answers again, while the budget is kept full
        while b.in_flight < int(b.limit):
            assert await b.acquire() is None
        b.release(0.01, overloaded=False)
    assert b.limit == 20


def app_with(control: AdmissionControl, gate: asyncio.Event, ran: list[str]) -> FastAPI:
    app = FastAPI()

    async def slow(name: str) -> dict[str, str]:
        ran.append(name)
        await gate.wait()
        return {"name": name}

    @app.post("/things/{name}")
    async def create(name: str) -> dict[str, str]:
        return await slow(name)

    @app.post("/login")
    async def login() -> dict[str, str]:
        return await slow("login")

    for path in QUIET_PATHS:
        app.add_api_route(path, lambda: {"status": "ok"}, methods=["GET"])
    app.add_middleware(AdmissionMiddleware, control=control)
    return app


@asynccontextmanager
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


async def test_refusals_are_503_in_the_error_shape_and_probes_are_never_shed() -> None:
    metrics = FastMetrics()
    control = AdmissionControl(
        "svc",
        {
            DEFAULT_BUDGET: BudgetSettings(max_concurrency=1, queue_size=0, retry_after_seconds=2),
            "login": BudgetSettings(max_concurrency=1, queue_size=0),
        },
        metrics,
        routes=[Route("POST", "/login", "login")],
        exempt=QUIET_PATHS,
    )
    gate, ran = asyncio.Event(), list[str]()
    app = app_with(control, gate, ran)
    control.learn_routes(app.openapi()["paths"])
    async with client(app) as c:
        first = asyncio.create_task(c.post("/things/a"))
        login = asyncio.create_task(c.post("/login"))  # its own budget: not crowded out
        for _ in range(500):  # until both handlers run (polling keeps the app untouched)
            if len(ran) == 2:
                break
            await asyncio.sleep(0.01)
        refused = await c.post("/things/b")
        probes = [(await c.get(path)).status_code for path in sorted(QUIET_PATHS)]
        gate.set()
        assert [(await first).status_code, (await login).status_code] == [200, 200]
    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "2"
    assert refused.json() == {
        "error": "overloaded",
        "detail": refused.json()["detail"],
        "request_id": refused.headers["X-Request-Id"],
    }
    assert probes == [200, 200, 200]
    assert ran == ["a", "login"]  # the refused request never reached its handler
    shed = metrics.counters["requests_shed_total"]
    assert shed.values[("svc", "/things/{name}", "queue_full")] == 1.0
    assert sum(shed.values.values()) == 1.0  # every other series starts at zero
