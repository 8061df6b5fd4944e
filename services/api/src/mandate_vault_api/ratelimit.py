"""Rate limits per tenant, per API key, and on login per account and per client address.

Two stores, one behaviour:

- **Per process** (the default, `make run`): a token bucket per key in this process's memory.
  With N replicas a client gets up to N times the limit.
- **Shared** (`API_REDIS_URL` set): sliding-window counters in Redis, kept by the maintained
  `limits` library (`SlidingWindowCounterRateLimiter`), so every replica counts against the
  same window and N replicas together hold the configured rate. One Redis round trip per
  request: an API-key request's two checks go out in one pipeline.

Redis unreachable: every scope falls back to this process's token buckets (the per-process
limits above) for `FALLBACK_SECONDS`, then Redis is tried again. A Redis outage therefore never
fails a request and never makes a limit disappear: login attempts stay capped per account and
per address on each replica (and the database lockout still applies across replicas). Every
check decided by the fallback counts in `rate_limit_fallback_total{scope}`, which the
RateLimitStoreUnavailable alert watches.

A refused call is a 429 with `Retry-After` and counts in `rate_limited_total{scope}`.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

from mandate_vault_api.shared_limits import RedisWindows
from mandate_vault_shared.errors import RateLimited
from mandate_vault_shared.telemetry import get_logger, names
from mandate_vault_shared.telemetry.instruments import Metrics

_MAX_KEYS: Final = 50_000
FALLBACK_SECONDS: Final = 1.0  # after a Redis failure, decide locally this long before retrying

log = get_logger(__name__)
Hit = tuple[str, str]  # (scope, key)


@dataclass(frozen=True)
class Limit:
    rate: float  # tokens per second
    burst: float

    @classmethod
    def per_minute(cls, count: float) -> Limit:
        return cls(rate=count / 60.0, burst=count)

    @property
    def window(self) -> tuple[int, int]:
        """(amount, seconds) of the equivalent sliding window: a burst's worth per burst time."""
        amount = max(1, round(self.burst))
        return amount, max(1, round(amount / self.rate))


class TokenBuckets:
    """One bucket per key, least recently used keys forgotten beyond `_MAX_KEYS`."""

    def __init__(self, limit: Limit) -> None:
        self.limit = limit
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str, now: float) -> float:
        """0 when allowed, else the seconds until a token is available."""
        tokens, stamp = self._buckets.pop(key, (self.limit.burst, now))
        tokens = min(self.limit.burst, tokens + (now - stamp) * self.limit.rate)
        if tokens >= 1:
            self._buckets[key] = (tokens - 1, now)
            wait = 0.0
        else:
            self._buckets[key] = (tokens, now)
            wait = (1 - tokens) / self.limit.rate
        if len(self._buckets) > _MAX_KEYS:
            self._buckets.popitem(last=False)
        return wait


class RateLimiter:
    def __init__(
        self, limits: dict[str, Limit], metrics: Metrics, shared: RedisWindows | None = None
    ) -> None:
        self._buckets = {scope: TokenBuckets(limit) for scope, limit in limits.items()}
        self._shared = shared
        self._shared_down_until = 0.0
        self._refused = metrics.counter(
            names.RATE_LIMITED_TOTAL, "Requests refused by a rate limit, by scope", ("scope",)
        )
        self._fallback = metrics.counter(
            names.RATE_LIMIT_FALLBACK_TOTAL,
            "Rate-limit checks decided per process because Redis was unreachable",
            ("scope",),
        )
        self._attributes = {scope: (scope,) for scope in limits}
        for scope in limits:  # the series exist from the start, so rate() sees the first one
            self._refused.add(self._attributes[scope], 0)
            self._fallback.add(self._attributes[scope], 0)  # 0 also without Redis

    async def check(self, *hits: Hit) -> None:
        """Raise `RateLimited` (429 + Retry-After) when a (scope, key) is over its limit."""
        if self._shared is not None and time.monotonic() >= self._shared_down_until:
            waits = await self._shared_waits(self._shared, hits)
            if waits is not None:
                for (scope, _), wait in zip(hits, waits, strict=True):
                    if wait > 0:
                        self._refuse(scope, wait)
                return
        now = time.monotonic()
        for scope, key in hits:
            if self._shared is not None:
                self._fallback.add(self._attributes[scope])
            wait = self._buckets[scope].take(key, now)
            if wait > 0:
                self._refuse(scope, wait)

    def _refuse(self, scope: str, wait: float) -> None:
        self._refused.add(self._attributes[scope])
        raise RateLimited(retry_after=max(1, math.ceil(wait)))

    async def _shared_waits(
        self, shared: RedisWindows, hits: tuple[Hit, ...]
    ) -> list[float] | None:
        """The waits Redis decides, or None (and the fallback armed) when it cannot answer."""
        try:
            waits = await shared.hits(hits)
        except Exception as exc:  # any store failure: decide locally, never fail the request
            if self._shared_down_until == 0.0:
                log.warning("rate_limit_store_unavailable", error_type=type(exc).__name__)
            self._shared_down_until = time.monotonic() + FALLBACK_SECONDS
            return None
        if self._shared_down_until:
            log.info("rate_limit_store_recovered")
            self._shared_down_until = 0.0
        return waits

    async def shared_store_ok(self) -> bool:
        """True without a shared store; else whether Redis answers a ping now."""
        return self._shared is None or await self._shared.ping()

    async def close(self) -> None:
        if self._shared is not None:
            await self._shared.close()
