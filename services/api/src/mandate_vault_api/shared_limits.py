"""Rate-limit windows every api replica shares: sliding-window counters in Redis (`limits`).

The algorithm, its Lua script and its key layout are the `limits` library's
(`SlidingWindowCounterRateLimiter` on its redis-py storage). Only the transport is ours: a
request's checks (an API key's and its tenant's) go out as one pipeline of the library's script
calls, so a request costs one Redis round trip whatever it checks. A refused hit asks for the
window's reset time as well, for `Retry-After`. Timeouts are short and the pool is bounded: a
slow or absent Redis makes the caller fall back, never wait.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from limits import RateLimitItem, RateLimitItemPerSecond
from limits.aio.storage import RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import NoScriptError

if TYPE_CHECKING:
    from mandate_vault_api.ratelimit import Limit

_MAX_CONNECTIONS: Final = 64
_COST: Final = 1


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

    async def hits(self, hits: Sequence[tuple[str, str]]) -> list[float]:
        """Per (scope, key): 0 when allowed, else the seconds until the window admits one more."""
        try:
            allowed = await self._pipelined(hits)
        except NoScriptError:  # Redis restarted and forgot the script: the library reloads it
            allowed = [await self._limiter.hit(self._items[s], s, k) for s, k in hits]
        return [
            0.0 if ok else await self._wait(scope, key)
            for (scope, key), ok in zip(hits, allowed, strict=True)
        ]

    async def _pipelined(self, hits: Sequence[tuple[str, str]]) -> list[bool]:
        bridge = self._storage.bridge
        client: Redis = bridge.get_connection()  # type: ignore[attr-defined]
        sha = bridge.lua_acquire_sliding_window.sha  # type: ignore[attr-defined]
        async with client.pipeline(transaction=False) as pipe:
            for scope, key in hits:
                item = self._items[scope]
                window = item.key_for(scope, key)
                pipe.evalsha(
                    sha,
                    2,
                    bridge.prefixed_key(self._storage._previous_window_key(window)),
                    bridge.prefixed_key(self._storage._current_window_key(window)),
                    item.amount,
                    item.get_expiry(),
                    _COST,
                )
            return [bool(result) for result in await pipe.execute()]

    async def _wait(self, scope: str, key: str) -> float:
        stats = await self._limiter.get_window_stats(self._items[scope], scope, key)
        return max(stats.reset_time - time.time(), 0.001)

    async def ping(self) -> bool:
        return await self._storage.check()

    async def close(self) -> None:
        await self._pool.disconnect()
