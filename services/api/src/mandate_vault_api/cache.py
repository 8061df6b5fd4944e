"""A small in-process TTL cache for hot, rarely-changing lookups.

Used for what every request would otherwise read from the database: who a session or an API
key belongs to, and which issuers a tenant trusts. A change clears the matching entries on
every replica within milliseconds of its commit (see `revocation`); the TTL
(``API_AUTH_CACHE_SECONDS``, 0 turns caching off) is the backstop while that channel is down.
Bounded: when full it starts over rather than grow.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class TtlCache(Generic[V]):
    def __init__(self, seconds: float, max_entries: int = 10_000) -> None:
        self._seconds = seconds
        self._max_entries = max_entries
        self._entries: dict[Hashable, tuple[float, V]] = {}

    async def get_or_load(self, key: Hashable, load: Callable[[], Awaitable[V]]) -> V:
        if self._seconds > 0:
            entry = self._entries.get(key)
            if entry is not None and entry[0] > time.monotonic():
                return entry[1]
        value = await load()
        if self._seconds > 0:
            if len(self._entries) >= self._max_entries:
                self._entries.clear()
            self._entries[key] = (time.monotonic() + self._seconds, value)
        return value

    def forget(self, key: Hashable) -> None:
        self._entries.pop(key, None)

    def forget_where(self, predicate: Callable[[V], bool]) -> None:
        """Drop every entry whose value matches (a scan: for rare changes only)."""
        for key in [k for k, (_, value) in self._entries.items() if predicate(value)]:
            self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()
