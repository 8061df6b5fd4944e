"""The delivery log's two hot statements on PostgreSQL, straight to asyncpg.

Profiled at 60 deliveries/s, SQLAlchemy's async layer was about 40 % of the worker's CPU: a
transaction (BEGIN, two statements, COMMIT) per batch of outcomes and a query per fetched
batch, each statement costing far more in the Python layers than in the database. Here:

- `write`: a batch of attempts and parked jobs is ONE statement (the attempt log rows, the
  endpoints' health and the delivery states, as arrays unnested in data-modifying CTEs), so one
  round trip and no explicit transaction; a single statement is atomic on its own. The health
  update writes a subscription row only when its state changes (first failure, first success).
- `known`: which fetched events were already handled, one round trip.

The rarer writes (a subscription gone or disabled, a 410) and SQLite (``make run``) keep the
SQLAlchemy path in `store`; both paths write the same rows with the same conflict rules.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncEngine

from mandate_vault_shared.telemetry.semconv import DbTelemetry
from mandate_vault_worker import store
from mandate_vault_worker.store import StateWrite, WriteKind

_ATTEMPT_COLUMNS: Final = (
    ("id", "text"),
    ("event_id", "text"),
    ("subscription_id", "text"),
    ("tenant_id", "text"),
    ("attempt", "int4"),
    ("attempted_at", "timestamptz"),
    ("status_code", "int4"),
    ("latency_ms", "float8"),
    ("error", "text"),
    ("outcome", "text"),
    ("response_body", "text"),
    ("retry_after_seconds", "float8"),
)
_HEALTH_COLUMNS: Final = (("id", "text"), ("ok", "bool"), ("at", "timestamptz"))
_STATE_COLUMNS: Final = (
    ("event_id", "text"),
    ("subscription_id", "text"),
    ("tenant_id", "text"),
    ("event_type", "text"),
    ("status", "text"),
    ("attempts", "int4"),
    ("next_attempt_at", "timestamptz"),
    ("last_status_code", "int4"),
    ("last_error", "text"),
    ("payload", "text"),
    ("trace_context", "text"),
    ("source", "text"),
    ("created_at", "timestamptz"),
    ("updated_at", "timestamptz"),
    ("redelivery", "text"),
)


def _unnest(columns: Sequence[tuple[str, str]], first: int) -> str:
    arrays = ", ".join(f"${first + n}::{kind}[]" for n, (_, kind) in enumerate(columns))
    return f"SELECT * FROM unnest({arrays})"  # noqa: S608 - our constants only


def _names(columns: Sequence[tuple[str, str]]) -> str:
    return ", ".join(name for name, _ in columns)


# Identifiers and types come from the constants above, never from input.
_WRITE: Final = (
    "WITH logged AS ("  # noqa: S608 - our constants only
    f"INSERT INTO webhook_delivery_attempts ({_names(_ATTEMPT_COLUMNS)}) "
    f"{_unnest(_ATTEMPT_COLUMNS, 1)} ON CONFLICT DO NOTHING), "
    "health AS (UPDATE webhook_subscriptions s "
    "SET failing_since = CASE WHEN h.ok THEN NULL ELSE h.at END "
    f"FROM ({_unnest(_HEALTH_COLUMNS, len(_ATTEMPT_COLUMNS) + 1)}) AS h(id, ok, at) "
    "WHERE s.id = h.id AND h.ok = (s.failing_since IS NOT NULL)) "  # as store._keep_health
    f"INSERT INTO webhook_deliveries ({_names(_STATE_COLUMNS)}) "
    f"{_unnest(_STATE_COLUMNS, len(_ATTEMPT_COLUMNS) + len(_HEALTH_COLUMNS) + 1)} "
    "ON CONFLICT (event_id) DO UPDATE SET "
    + ", ".join(f"{name} = EXCLUDED.{name}" for name in store.MOVING_COLUMNS)
    + " WHERE webhook_deliveries.attempts < EXCLUDED.attempts"
    + " OR webhook_deliveries.status = 'pending'"  # as store.replaces
)
_KNOWN: Final = (
    "SELECT event_id FROM webhook_deliveries WHERE event_id = ANY($1::text[]) "
    "AND NOT (status = 'pending' AND attempts = 0)"
)


def handles(write: StateWrite) -> bool:
    """Attempts and parked jobs; not the rare writes that touch subscriptions or close rows."""
    return write.kind in (WriteKind.ATTEMPT, WriteKind.PARK) and write.disable_reason is None


def _columns(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> list[Any]:
    return [[row[name] for row in rows] for name, _ in columns]


class PgFastPath:
    def __init__(self, engine: AsyncEngine, telemetry: DbTelemetry | None) -> None:
        self._engine = engine
        self._telemetry = telemetry

    @asynccontextmanager
    async def _driver(self) -> AsyncIterator[Any]:
        async with self._engine.connect() as conn:
            # Nothing runs through SQLAlchemy on this connection, so it never opens a
            # transaction of its own here.
            raw = await conn.get_raw_connection()
            try:
                yield raw.driver_connection
            except OSError:
                await conn.invalidate()  # SQLAlchemy never saw the failure: drop the connection
                raise

    async def _run(self, operation: str, call: str, sql: str, *args: Any) -> Any:
        async with self._driver() as driver:
            started, error = time.perf_counter(), ""
            try:
                return await getattr(driver, call)(sql, *args)
            except Exception as exc:
                error = type(exc).__name__
                raise
            finally:
                if self._telemetry is not None:
                    seconds = time.perf_counter() - started
                    self._telemetry.finished(operation, sql, seconds, error)

    async def known(self, event_ids: Sequence[str]) -> set[str]:
        if not event_ids:
            return set()
        rows = await self._run("select", "fetch", _KNOWN, list(event_ids))
        return {row["event_id"] for row in rows}

    async def write(self, writes: Sequence[StateWrite]) -> None:
        attempts = [store.attempt_row(w, w.result) for w in writes if w.result is not None]
        states = [store.state_row(w) for w in store.latest_per_event(writes)]
        health = [
            dict(zip(("id", "ok", "at"), row, strict=True)) for row in store.endpoint_health(writes)
        ]
        await self._run(
            "insert",
            "execute",
            _WRITE,
            *_columns(attempts, _ATTEMPT_COLUMNS),
            *_columns(health, _HEALTH_COLUMNS),
            *_columns(states, _STATE_COLUMNS),
        )
