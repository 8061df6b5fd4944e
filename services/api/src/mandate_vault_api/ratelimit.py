"""Rate limits: token buckets per tenant, per API key, and on login per account and per client.

Buckets live in this process: with N api replicas behind a load balancer a client gets up to N
times the limit, which these limits (abuse brakes, not billing quotas) tolerate. A refused call
is a 429 with `Retry-After` and counts in `rate_limited_total{scope}`.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

from opentelemetry.metrics import Meter

from mandate_vault_shared.errors import RateLimited
from mandate_vault_shared.telemetry import names

_MAX_KEYS: Final = 50_000


@dataclass(frozen=True)
class Limit:
    rate: float  # tokens per second
    burst: float

    @classmethod
    def per_minute(cls, count: float) -> Limit:
        return cls(rate=count / 60.0, burst=count)


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
    def __init__(self, limits: dict[str, Limit], meter: Meter) -> None:
        self._buckets = {scope: TokenBuckets(limit) for scope, limit in limits.items()}
        self._refused = meter.create_counter(
            names.RATE_LIMITED_TOTAL, description="Requests refused by a rate limit, by scope"
        )
        self._attributes = {scope: {"scope": scope} for scope in limits}
        for scope in limits:  # the series exist from the start, so rate() sees the first one
            self._refused.add(0, self._attributes[scope])

    def check(self, scope: str, key: str) -> None:
        """Raise `RateLimited` (429 + Retry-After) when `key` is over its `scope`'s limit."""
        wait = self._buckets[scope].take(key, time.monotonic())
        if wait > 0:
            self._refused.add(1, self._attributes[scope])
            raise RateLimited(retry_after=max(1, math.ceil(wait)))
