"""Rate-limit windows every api replica shares: sliding-window counters in Redis (`limits`).

A hit is one round trip (a Lua script that reads both windows and counts the hit atomically);
a refused hit asks for the window's reset time as well, for `Retry-After`. Timeouts are short
and the pool is bounded: a slow or absent Redis makes the caller fall back, never wait.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Final

from limits import RateLimitItem, RateLimitItemPerSecond
from limits.aio.storage import RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from redis.asyncio import BlockingConnectionPool

if TYPE_CHECKING:
    from mandate_vault_api.ratelimit import Limit

_MAX_CONNECTIONS: Final = 64


class RedisWindows:
    def __init__(self, url: str, prefix: str, timeout: float, limits: dict[str, Limit]) -> None:
        self._pool = BlockingConnectionPool.from_url(
            url,
            max_connections=_MAX_CONNECTIONS,
            timeout=timeout,  # waiting for a free connection
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
        )
        self._storage = RedisStorage(
            "async+" + url,
            implementation="redispy",
            key_prefix=prefix,
            wrap_exceptions=True,
            connection_pool=self._pool,  # type: ignore[arg-type]  # handed to the client
        )
        self._limiter = SlidingWindowCounterRateLimiter(self._storage)
        self._items: dict[str, RateLimitItem] = {
            scope: RateLimitItemPerSecond(*limit.window) for scope, limit in limits.items()
        }

    async def hit(self, scope: str, key: str) -> float:
        """0 when allowed, else the seconds until the window admits another hit."""
        item = self._items[scope]
        if await self._limiter.hit(item, scope, key):
            return 0.0
        stats = await self._limiter.get_window_stats(item, scope, key)
        return max(stats.reset_time - time.time(), 0.001)

    async def ping(self) -> bool:
        return await self._storage.check()

    async def close(self) -> None:
        await self._pool.disconnect()
