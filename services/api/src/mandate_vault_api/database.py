"""The api's handle on its database: an engine plus short, explicit transactions, and on
PostgreSQL a small asyncpg pool of its own for the create-mandate write (`HotPool`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mandate_vault_shared.telemetry.instruments import UpDown
from mandate_vault_shared.telemetry.semconv import DbTelemetry

# Raised when the database is unreachable or the pool is exhausted: answered 503 + Retry-After.
# The asyncpg ones escape from the create transaction, which talks to asyncpg directly.
DATABASE_DOWN_ERRORS: tuple[type[Exception], ...] = (
    DBAPIError,
    PoolTimeoutError,
    ConnectionError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
    # the protocol's state after the server dropped the connection mid-conversation
    asyncpg.exceptions.InternalClientError,
)


class HotPoolExhausted(ConnectionError):
    """No connection of the hot pool came free in time (answered 503 like any pool timeout)."""


async def _keep_session(_: asyncpg.Connection) -> None:
    """Connections come back as they left: the hot path changes no session state, so asyncpg's
    reset query (a round trip per release) is skipped."""


class HotPool:
    """asyncpg connections for the hottest write, taken without SQLAlchemy.

    Checking a connection out of SQLAlchemy's async pool and reaching its driver cost ~100 us of
    CPU on the reference machine, asyncpg's own pool ~45 us (both including a trivial query).
    Its connections are apart from the engine's (`API_DB_POOL_SIZE`), so creates and everything
    else cannot take each other's connections; opened on first use, counted in
    ``db_connections_active`` while checked out.
    """

    def __init__(self, dsn: str, size: int, timeout: float, in_use: UpDown | None = None) -> None:
        self._dsn = dsn
        self._size = size
        self._timeout = timeout
        self._in_use = in_use
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        pool = self._pool or await self._open()
        try:
            conn = await pool.acquire(timeout=self._timeout)
        except TimeoutError as exc:
            msg = f"no database connection free within {self._timeout} s"
            raise HotPoolExhausted(msg) from exc
        if self._in_use is not None:
            self._in_use.add(1)
        try:
            yield conn
        except DATABASE_DOWN_ERRORS:
            conn.terminate()  # never hand a broken connection out again: the pool replaces it
            raise
        finally:
            if self._in_use is not None:
                self._in_use.add(-1)
            await pool.release(conn)

    async def _open(self) -> asyncpg.Pool:
        async with self._opening:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    self._dsn, min_size=0, max_size=self._size, reset=_keep_session
                )
        return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


class Database:
    def __init__(
        self,
        engine: AsyncEngine,
        telemetry: DbTelemetry | None = None,
        *,
        hot_pool_size: int = 20,
        pool_timeout: float = 5.0,
        connections_in_use: UpDown | None = None,
    ) -> None:
        self.engine = engine
        # Metrics and spans of statements that bypass SQLAlchemy (see fast_writes)
        self.telemetry = telemetry
        self.hot: HotPool | None = None
        if self.dialect == "postgresql":
            dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
            self.hot = HotPool(dsn, hot_pool_size, pool_timeout, connections_in_use)

    async def close(self) -> None:
        if self.hot is not None:
            await self.hot.close()
        await self.engine.dispose()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.begin() as conn:
            yield conn

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection for one-statement reads: autocommit, so no BEGIN/ROLLBACK round trips."""
        async with self.engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            yield conn

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name


async def insert_ignoring_conflict(
    conn: AsyncConnection, table: Table, values: Mapping[str, Any]
) -> None:
    """INSERT that silently skips a row whose primary key already exists."""
    dialect = conn.dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    await conn.execute(insert(table).values(**values).on_conflict_do_nothing())
