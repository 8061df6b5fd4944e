"""The api's handle on its database: an engine plus short, explicit transactions."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mandate_vault_shared.telemetry.fast_metrics import FastHistogram

# Raised when the database is unreachable or the pool is exhausted: answered 503 + Retry-After.
# The asyncpg ones escape from the create transaction, which talks to asyncpg directly.
DATABASE_DOWN_ERRORS: tuple[type[Exception], ...] = (
    DBAPIError,
    PoolTimeoutError,
    ConnectionError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
)


class Database:
    def __init__(self, engine: AsyncEngine, query_timings: FastHistogram | None = None) -> None:
        self.engine = engine
        # db_query_duration_seconds, for statements that bypass SQLAlchemy (see fast_writes)
        self.query_timings = query_timings

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
