"""Refusals at the HTTP server's edge (web/edge.py), on a real uvicorn server and sockets."""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from mandate_vault_harness.net import free_port
from mandate_vault_shared.serve import http_protocol
from mandate_vault_shared.telemetry import names
from mandate_vault_shared.telemetry.fast_metrics import FastMetrics
from mandate_vault_shared.web.admission import AdmissionControl, AdmissionMiddleware, BudgetSettings
from mandate_vault_shared.web.edge import edge_protocol

PATH = "/work"


class App:
    """Holds every request it gets until released; counts them."""

    def __init__(self) -> None:
        self.started = 0
        self.release = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        self.started += 1
        if scope["path"] == PATH:
            await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})


class Counted:
    """The ASGI stack uvicorn runs: counts every request that reaches it at all."""

    def __init__(self, app: AdmissionMiddleware) -> None:
        self.app = app
        self.calls = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.calls += 1
        await self.app(scope, receive, send)


@contextmanager
def serving(
    control: AdmissionControl, app: Counted
) -> Iterator[tuple[str, asyncio.AbstractEventLoop]]:
    port = free_port()
    config = uvicorn.Config(
        app,
        port=port,
        loop="uvloop",
        http=edge_protocol(control),
        lifespan="off",
        log_config=None,
    )
    server = uvicorn.Server(config)
    loops: list[asyncio.AbstractEventLoop] = []

    def run() -> None:
        loop = asyncio.new_event_loop()
        loops.append(loop)
        loop.run_until_complete(server.serve())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        threading.Event().wait(0.02)
    try:
        yield f"http://127.0.0.1:{port}", loops[0]
    finally:
        server.should_exit = True
        thread.join(10)


METRICS = FastMetrics()


@pytest.fixture
def control() -> AdmissionControl:
    budget = BudgetSettings(max_concurrency=1, min_concurrency=1, queue_size=0, adaptive=False)
    return AdmissionControl("test", {"default": budget}, METRICS, exempt=["/healthz"])


def shed(reason: str) -> float:
    counter = METRICS.counters["requests_shed_total"]
    return counter.values.get(("test", names.UNMATCHED_ENDPOINT, reason), 0.0)


def test_a_full_budget_is_refused_by_the_server_before_the_app_runs(
    control: AdmissionControl,
) -> None:
    app = App()
    refused_before = shed("queue_full")
    stack = Counted(AdmissionMiddleware(app, control))
    with serving(control, stack) as (url, loop), httpx.Client(base_url=url) as client:
        holder = threading.Thread(target=lambda: client.post(PATH, content=b"x" * 10), daemon=True)
        holder.start()
        while app.started == 0:
            threading.Event().wait(0.01)
        with httpx.Client(base_url=url) as other:  # one keep-alive connection, reused
            answers = [
                other.post(
                    PATH,
                    content=b"a body the server reads and drops",
                    headers={"X-Request-Id": f"r-{n}"},
                )
                for n in range(5)
            ]
            head = other.head(PATH)
            exempt = other.get("/healthz")
        loop.call_soon_threadsafe(app.release.set)
        holder.join(10)
    # The held request and the exempt probe reached the app; no refused one even reached the
    # ASGI stack: the server answered them before a task existed.
    assert (stack.calls, app.started) == (2, 2)
    for n, answer in enumerate(answers):
        assert answer.status_code == 503
        assert answer.headers["Retry-After"] == "1"
        assert answer.headers["X-Request-Id"] == f"r-{n}"
        assert answer.json() == {
            "error": "overloaded",
            "detail": "The service is at capacity; retry after the delay in Retry-After.",
            "request_id": f"r-{n}",
        }
    assert head.status_code == 503
    assert head.content == b""
    assert exempt.status_code == 200
    assert control.budgets["default"].in_flight == 0
    assert shed("queue_full") - refused_before == 6  # the five POSTs and the HEAD, counted


def test_the_uvicorn_internals_the_edge_relies_on_are_still_there() -> None:
    parameters = list(inspect.signature(HttpToolsProtocol._start_asgi_task).parameters)
    assert parameters == ["self", "cycle", "app"]
    cycle = RequestResponseCycle(
        scope={"type": "http"},  # type: ignore[typeddict-item]
        transport=None,  # type: ignore[arg-type]
        flow=None,  # type: ignore[arg-type]
        logger=None,  # type: ignore[arg-type]
        access_logger=None,  # type: ignore[arg-type]
        access_log=False,
        default_headers=[],
        message_event=asyncio.Event(),
        expect_100_continue=False,
        keep_alive=True,
        on_response=lambda: None,
    )
    for name in ("keep_alive", "waiting_for_100_continue", "default_headers", "message_event"):
        assert hasattr(cycle, name)
    assert (cycle.response_started, cycle.response_complete) == (False, False)
    assert FlowControl(None).write_paused is False  # type: ignore[arg-type]
    source = inspect.getsource(HttpToolsProtocol)
    assert "self._start_asgi_task(self.cycle, app)" in source  # a request's start
    assert "self._start_asgi_task(cycle, app)" in source  # a pipelined request's start


def test_a_service_with_admission_control_is_served_by_the_edge_protocol(
    control: AdmissionControl,
) -> None:
    plain, guarded = FastAPI(), FastAPI()
    guarded.state.admission = control
    assert http_protocol(plain) == "httptools"
    protocol = http_protocol(guarded)
    assert isinstance(protocol, type)
    assert issubclass(protocol, HttpToolsProtocol)
    assert protocol.admission is control  # type: ignore[attr-defined]
