"""Cache invalidation across processes with PostgreSQL LISTEN/NOTIFY.

A change that other processes may have cached (an API key revoked, a user disabled or
demoted, a session ended, a trusted issuer removed, a webhook subscription deleted) calls
`announce(conn, kind, key)` inside its own transaction: PostgreSQL delivers the notification
to every listening process when, and only if, that transaction commits. Each process keeps one
`Listener` on a dedicated connection and drops the matching cache entries as notifications
arrive (milliseconds after the commit).

If the listening connection is lost, notifications sent meanwhile are lost with it: the
listener then clears every cache it serves (`on_gap`) when it reconnects, and until then the
caches' TTL is the backstop. On SQLite (`make run`, one process) `announce` does nothing; the
process clears its own caches after the commit.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from typing import Any, Final

import asyncpg
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from mandate_vault_shared.telemetry import get_logger

CHANNEL: Final = "mandate_vault_invalidate"
APPLICATION_NAME: Final = (
    "mandate-vault-invalidation"  # how the connection shows in pg_stat_activity
)
_KEEPALIVE_SECONDS: Final = 5.0
_RETRY_SECONDS: Final = 1.0

log = get_logger(__name__)
Handler = Callable[[str], None]


async def announce(conn: AsyncConnection, kind: str, key: str) -> None:
    """Queue `kind:key` for every listener; sent at commit, dropped on rollback."""
    if conn.dialect.name == "postgresql":
        await conn.execute(text("SELECT pg_notify(:c, :p)"), {"c": CHANNEL, "p": f"{kind}:{key}"})


def asyncpg_dsn(database_url: str) -> str:
    """The plain libpq-style URL asyncpg accepts, from a SQLAlchemy URL."""
    url = make_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


class Listener:
    """Calls `handlers[kind](key)` for each notification; `on_gap()` after every (re)connect."""

    def __init__(
        self,
        database_url: str,
        handlers: Mapping[str, Handler],
        on_gap: Callable[[], None],
        on_message: Callable[[str], None] | None = None,
    ) -> None:
        self._dsn = asyncpg_dsn(database_url)
        self._handlers = dict(handlers)
        self._on_gap = on_gap
        self._on_message = on_message or (lambda _kind: None)
        self.connected = False

    def _dispatch(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        kind, _, key = payload.partition(":")
        handler = self._handlers.get(kind)
        if handler is not None:
            handler(key)
            self._on_message(kind)

    async def run(self) -> None:
        while True:
            try:
                await self._listen()
            except Exception as exc:  # connection lost or refused: the TTL covers the gap
                log.warning("invalidation_channel_lost", error_type=type(exc).__name__)
            self.connected = False
            await asyncio.sleep(_RETRY_SECONDS)

    async def _listen(self) -> None:
        conn = await asyncpg.connect(
            self._dsn, timeout=5, server_settings={"application_name": APPLICATION_NAME}
        )
        closed = asyncio.Event()
        conn.add_termination_listener(lambda _conn: closed.set())
        try:
            await conn.add_listener(CHANNEL, self._dispatch)
            self._on_gap()  # anything announced while we were not listening is forgotten
            self._on_message("gap")
            self.connected = True
            while not closed.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(closed.wait(), _KEEPALIVE_SECONDS)
                if not closed.is_set():
                    await conn.fetchval("SELECT 1", timeout=_KEEPALIVE_SECONDS)
            msg = "listening connection closed"
            raise ConnectionError(msg)
        finally:
            with contextlib.suppress(Exception):
                await conn.close(timeout=1)
