"""Outgoing HTTP over one shared aiohttp session, with a CLIENT span and W3C propagation.

aiohttp was chosen by measurement: api -> verifier over a shared `httpx.AsyncClient` reached
~320 req/s (p99 183 ms) on the reference machine, over a shared `aiohttp.ClientSession` ~1,720
req/s (p99 17 ms).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from opentelemetry import propagate
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from yarl import URL


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
    attributes: dict[str, str | int] = {
        "http.request.method": method,
        "server.address": target.host or "",
        "server.port": target.port or 0,
        "url.full": str(target.with_query(None).with_fragment(None)),
    }
    with tracer.start_as_current_span(method, kind=SpanKind.CLIENT, attributes=attributes) as span:
        outgoing = dict(headers or {})
        propagate.inject(outgoing)
        try:
            async with session.request(method, target, headers=outgoing, **kwargs) as response:
                span.set_attribute("http.response.status_code", response.status)
                if response.status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
                yield response
        except (aiohttp.ClientError, TimeoutError) as exc:
            span.set_attribute("error.type", type(exc).__name__)
            raise
