"""Where to deliver for a subscription, and with which secrets, reused for a few seconds.

Reading the subscription and decrypting its secrets for every delivery would cost a query and a
Fernet decryption each; the answer (a target, or why there is none) is kept for
``WORKER_SUBSCRIPTION_CACHE_SECONDS``. A change made through the api (new URL, rotated secret,
disabled) therefore reaches deliveries within that time; the worker forgets an entry at once
when it disables a subscription itself (410 Gone). Concurrent lookups of one subscription share
one query.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from mandate_vault_shared.webhooks import SecretBox
from mandate_vault_worker import store
from mandate_vault_worker.delivery import Target

_MAX_ENTRIES = 10_000


class TargetCache:
    def __init__(
        self,
        engine: AsyncEngine,
        box: SecretBox,
        ttl_seconds: float,
        clock: Callable[[], datetime],
    ) -> None:
        self._engine = engine
        self._box = box
        self._ttl = ttl_seconds
        self._clock = clock
        self._entries: dict[str, tuple[float, asyncio.Future[Target | str]]] = {}

    async def get(self, subscription_id: str) -> Target | str:
        now = time.monotonic()
        entry = self._entries.get(subscription_id)
        if entry is not None and entry[0] > now:
            return await asyncio.shield(entry[1])
        future: asyncio.Future[Target | str] = asyncio.get_running_loop().create_future()
        self._entries[subscription_id] = (now + self._ttl, future)
        try:
            async with store.reading(self._engine) as conn:
                found = await store.target_for(conn, self._box, subscription_id, self._clock())
        except BaseException as exc:
            self._entries.pop(subscription_id, None)
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody is warned
            raise
        future.set_result(found)
        if len(self._entries) > _MAX_ENTRIES:
            self._evict(now)
        return found

    def forget(self, subscription_id: str) -> None:
        self._entries.pop(subscription_id, None)

    def forget_all(self) -> None:
        self._entries.clear()

    def _evict(self, now: float) -> None:
        for key, (expires, _) in list(self._entries.items()):
            if expires <= now:
                del self._entries[key]
