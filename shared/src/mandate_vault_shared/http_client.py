"""Outgoing HTTP over one shared aiohttp session, with a CLIENT span, W3C propagation and
``http.client.request.duration``.

aiohttp was chosen by measurement: api -> verifier over a shared `httpx.AsyncClient` reached
~320 req/s (p99 183 ms) on the reference machine, over a shared `aiohttp.ClientSession` ~1,720
req/s (p99 17 ms).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import aiohttp
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from yarl import URL

from mandate_vault_shared.telemetry.semconv import HttpClientTelemetry


@lru_cache(maxsize=256)
def _attributes(method: str, target: URL) -> dict[str, str | int]:
    return {
        "http.request.method": method,
        "server.address": target.host or "",
        "server.port": target.port or 0,
        "url.full": str(target.with_query(None).with_fragment(None)),
    }


@dataclass
class ClientCall:
    """One outgoing request in progress: its span, its headers (with the trace context), and
    what came of it (for ``http.client.request.duration``)."""

    span: Span
    headers: dict[str, str]
    status: int | None = None
    error: str = ""

    def answered(self, status: int) -> None:
        self.status = status
        if self.span.is_recording():
            self.span.set_attribute("http.response.status_code", status)
            if status >= 500:
                self.span.set_status(Status(StatusCode.ERROR))

    def failed(self, exc: BaseException) -> None:
        self.error = type(exc).__name__
        self.span.set_attribute("error.type", self.error)


@contextmanager
def _span(
    tracer: Tracer, method: str, target: URL, headers: Mapping[str, str] | None
) -> Iterator[ClientCall]:
    """Inside a trace that is not sampled the child would record nothing (the sampler follows
    the parent): the current span's context is propagated instead, which skips creating one
    per call (~30 us on the hot path)."""
    current = trace.get_current_span()
    context = current.get_span_context()
    outgoing = dict(headers or {})
    if context.is_valid and not context.trace_flags.sampled:
        propagate.inject(outgoing)
        yield ClientCall(current, outgoing)
        return
    attributes = _attributes(method, target)
    with tracer.start_as_current_span(method, kind=SpanKind.CLIENT, attributes=attributes) as span:
        propagate.inject(outgoing)
        yield ClientCall(span, outgoing)


@contextmanager
def client_call(
    http: HttpClientTelemetry,
    method: str,
    target: URL,
    headers: Mapping[str, str] | None = None,
) -> Iterator[ClientCall]:
    """A CLIENT span and the duration metric for one outgoing request."""
    started = time.perf_counter()
    with _span(http.tracer, method, target, headers) as call:
        try:
            yield call
        except BaseException as exc:
            if not call.error:
                call.failed(exc)
            raise
        finally:
            seconds = time.perf_counter() - started
            http.record(
                method, target.host or "", target.port or 0, call.status, call.error, seconds
            )


@asynccontextmanager
async def traced_request(
    session: aiohttp.ClientSession,
    http: HttpClientTelemetry,
    method: str,
    url: str | URL,
    *,
    headers: Mapping[str, str] | None = None,
    **kwargs: Any,
) -> AsyncIterator[aiohttp.ClientResponse]:
    target = URL(url)
    with client_call(http, method, target, headers) as call:
        async with session.request(method, target, headers=call.headers, **kwargs) as response:
            call.answered(response.status)
            yield response
