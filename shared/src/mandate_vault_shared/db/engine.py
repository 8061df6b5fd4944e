"""The async engine, with the monitoring guide's database metrics and the statement spans.

- ``db_connections_active``: connections checked out of the pool right now;
- ``db_query_duration_seconds{operation}``: per statement, ``operation`` in a fixed small set;
- ``db.client.operation.duration`` and a CLIENT span per statement inside a sampled trace
  (`telemetry.semconv.DbTelemetry`; in the SDK pipeline the spans come from the
  asyncpg/sqlalchemy instrumentation).

SQLite (``make run``'s embedded default) gets a pool of one connection in WAL mode: with a pool
of ten, concurrent writers queued on SQLite's file lock and p99 reached 1.2 s.
"""

from __future__ import annotations

import time
from typing import Any, Final

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from mandate_vault_shared.telemetry import Telemetry
from mandate_vault_shared.telemetry.instruments import UpDown
from mandate_vault_shared.telemetry.semconv import DbTelemetry

OPERATIONS: Final = ("select", "insert", "update", "delete")
OTHER_OPERATION: Final = "other"
_START_KEY: Final = "_mv_query_started"


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def create_engine(
    url: str,
    *,
    telemetry: Telemetry | None = None,
    pool_size: int = 20,
    pool_timeout: float = 5.0,
) -> AsyncEngine:
    """The engine; with `telemetry`, instrumented (metrics and statement spans)."""
    if is_sqlite(url):
        engine = create_async_engine(url, pool_size=1, max_overflow=0, pool_timeout=pool_timeout)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    else:
        engine = create_async_engine(
            url,
            pool_size=pool_size,
            max_overflow=0,
            pool_timeout=pool_timeout,
            # No pre-ping: it would add a round trip to every checkout. A connection that died
            # fails its statement (answered 503), is discarded, and the next one is fresh.
            pool_recycle=1800,
        )
    if telemetry is not None:
        system = engine.dialect.name
        _instrument(engine.sync_engine, telemetry.database(system), telemetry.connections())
        if telemetry.engine_instrumentation is not None:
            telemetry.engine_instrumentation(engine.sync_engine)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    for pragma in ("journal_mode=WAL", "busy_timeout=10000", "foreign_keys=ON"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def operation_of(statement: str) -> str:
    head = statement.lstrip()[:8].lower()
    for operation in OPERATIONS:
        if head.startswith(operation):
            return operation
    return OTHER_OPERATION


def _instrument(engine: Engine, db: DbTelemetry, active: UpDown) -> None:
    @event.listens_for(engine, "checkout")
    def _checkout(*_: Any) -> None:
        active.add(1)

    @event.listens_for(engine, "checkin")
    def _checkin(*_: Any) -> None:
        active.add(-1)

    @event.listens_for(engine, "before_cursor_execute")
    def _before(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        conn.info[_START_KEY] = time.perf_counter()

    @event.listens_for(engine, "after_cursor_execute")
    def _after(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        started = conn.info.pop(_START_KEY, None)
        if started is not None:
            db.finished(operation_of(statement), statement, time.perf_counter() - started)

    @event.listens_for(engine, "handle_error")
    def _failed(context: Any) -> None:
        started = context.connection.info.pop(_START_KEY, None) if context.connection else None
        if started is not None and context.statement:
            error = type(context.original_exception).__name__
            seconds = time.perf_counter() - started
            db.finished(operation_of(context.statement), context.statement, seconds, error)
