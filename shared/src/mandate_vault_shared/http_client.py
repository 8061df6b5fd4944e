"""Outgoing HTTP over one shared aiohttp session, with a CLIENT span and W3C propagation.

aiohttp was chosen by measurement: api -> verifier over a shared `httpx.AsyncClient` reached
~320 req/s (p99 183 ms) on the reference machine, over a shared `aiohttp.ClientSession` ~1,720
req/s (p99 17 ms).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from functools import lru_cache
from typing import Any

import aiohttp
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from yarl import URL


@lru_cache(maxsize=256)
def _attributes(method: str, target: URL) -> dict[str, str | int]:
    return {
        "http.request.method": method,
        "server.address": target.host or "",
        "server.port": target.port or 0,
        "url.full": str(target.with_query(None).with_fragment(None)),
    }


@contextmanager
def client_span(
    tracer: Tracer, method: str, target: URL, headers: Mapping[str, str] | None = None
) -> Iterator[tuple[Span, dict[str, str]]]:
    """A CLIENT span for one outgoing request, and the request's headers with the W3C trace
    context of that span added.

    Inside a trace that is not sampled the child would record nothing (the sampler follows the
    parent): the current span's context is propagated instead, which skips creating one per
    call (~30 us on the hot path)."""
    current = trace.get_current_span()
    context = current.get_span_context()
    if context.is_valid and not context.trace_flags.sampled:
        outgoing = dict(headers or {})
        propagate.inject(outgoing)
        yield current, outgoing
        return
    attributes = _attributes(method, target)
    with tracer.start_as_current_span(method, kind=SpanKind.CLIENT, attributes=attributes) as span:
        outgoing = dict(headers or {})
        propagate.inject(outgoing)
        yield span, outgoing


def record_answer(span: Span, status: int) -> None:
    if span.is_recording():
        span.set_attribute("http.response.status_code", status)
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR))


@asynccontextmanager
async def traced_request(
    session: aiohttp.ClientSession,
    tracer: Tracer,
    method: str,
    url: str | URL,
    *,
    headers: Mapping[str, str] | None = None,
    **kwargs: Any,
) -> AsyncIterator[aiohttp.ClientResponse]:
    target = URL(url)
    with client_span(tracer, method, target, headers) as (span, outgoing):
        try:
            async with session.request(method, target, headers=outgoing, **kwargs) as response:
                record_answer(span, response.status)
                yield response
        except (aiohttp.ClientError, TimeoutError) as exc:
            span.set_attribute("error.type", type(exc).__name__)
            raise
