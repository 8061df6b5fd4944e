"""The create-mandate write: the mandate, its outbox rows and its idempotency key, atomically.

Two implementations of one contract (tests/api/test_fast_writes.py runs both on the same
PostgreSQL database and compares every row they wrote):

- PostgreSQL: ONE statement, sent straight to asyncpg over `database.HotPool`. Data-modifying
  CTEs insert the mandate, one outbox row per subscription that wants the event
  (selected inside the statement, so it sees exactly the subscriptions committed when it runs)
  and the idempotency key. A single statement is its own transaction: one round trip instead
  of six (BEGIN, four statements, COMMIT), which on the reference machine took the api's CPU
  per create down by ~0.25 ms and PostgreSQL's by ~0.1 ms (docs/perf/README.md).
- Anything else (SQLite for `make run`): SQLAlchemy Core statements in one transaction.
  SQLite has no data-modifying CTEs, and SQLAlchemy's async layer costs ~0.1 ms per statement
  here, too much for the hot path on PostgreSQL: so two paths, kept equal by that test.

Both take the outbox columns an event shares from `webhooks.event_columns`, so what an outbox
row holds is defined once. Its timing lands in ``db_query_duration_seconds`` and the database
spans like any other statement's.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from functools import cache
from typing import Any, Final

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql

from mandate_vault_api import idempotency, webhooks
from mandate_vault_api.database import Database
from mandate_vault_shared.db.schema import idempotency_keys, mandates, outbox
from mandate_vault_shared.messages import EventType

# Columns of an outbox row the statement computes per subscription (everything else is shared).
_EVENT_ID_SQL: Final = "'msg_' || replace(gen_random_uuid()::text, '-', '')"
_PER_SUBSCRIPTION: Final = {"event_id": _EVENT_ID_SQL, "subscription_id": "s.id"}
_SUBSCRIBED: Final = (
    "FROM webhook_subscriptions s WHERE s.tenant_id = {tenant} "
    "AND {event_type} = ANY(string_to_array(s.event_types, ','))"
)


_LENGTH: Final = re.compile(r"\(.*\)")
_POSTGRESQL: Final = postgresql.dialect()  # type: ignore[no-untyped-call]


class _Parameters:
    """Numbered, typed placeholders ($1::TEXT, ...) by name, in first-use order."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def ref(self, name: str, table: Table, column: str) -> str:
        if name not in self.names:
            self.names.append(name)
        # The column's type without its length: casting to VARCHAR(n) would silently truncate
        # an over-long value where the INSERT must refuse it.
        sql_type = _LENGTH.sub("", table.c[column].type.compile(dialect=_POSTGRESQL))
        return f"${self.names.index(name) + 1}::{sql_type}"


@dataclass(frozen=True)
class _CreateStatement:
    sql: str
    parameters: tuple[str, ...]  # "mandate.<column>", "event.<column>", "key", "request_hash"

    def arguments(
        self, mandate: dict[str, Any], event: dict[str, Any], key: tuple[str, str] | None
    ) -> list[Any]:
        values = {f"mandate.{name}": value for name, value in mandate.items()}
        values.update({f"event.{name}": value for name, value in event.items()})
        if key is not None:
            values["key"], values["request_hash"] = key
        return [values[name] for name in self.parameters]


@cache
def _create_statement(event_columns: tuple[str, ...], *, with_key: bool) -> _CreateStatement:
    """The statement for events carrying `event_columns` (from `webhooks.event_columns`)."""
    p = _Parameters()
    mandate_columns = [column.name for column in mandates.columns]
    mandate_values = ", ".join(p.ref(f"mandate.{c}", mandates, c) for c in mandate_columns)
    outbox_columns = [*_PER_SUBSCRIPTION, *event_columns]
    outbox_values = ", ".join(
        _PER_SUBSCRIPTION.get(c) or p.ref(f"event.{c}", outbox, c) for c in outbox_columns
    )
    subscribed = _SUBSCRIBED.format(
        tenant=p.ref("mandate.tenant_id", mandates, "tenant_id"),
        event_type=p.ref("event.event_type", outbox, "event_type"),
    )
    # Identifiers come from our own table definitions, never from input.
    parts = [
        f"WITH mandate AS (INSERT INTO mandates ({', '.join(mandate_columns)}) "  # noqa: S608
        f"VALUES ({mandate_values})), "
        f"events AS (INSERT INTO outbox ({', '.join(outbox_columns)}) "
        f"SELECT {outbox_values} {subscribed} RETURNING 1)"
    ]
    if with_key:
        key_values = ", ".join(
            [
                p.ref("mandate.tenant_id", mandates, "tenant_id"),
                p.ref("key", idempotency_keys, "key"),
                p.ref("request_hash", idempotency_keys, "request_hash"),
                p.ref("mandate.id", mandates, "id"),
                p.ref("mandate.created_at", mandates, "created_at"),
            ]
        )
        parts.append(
            ", idem AS (INSERT INTO idempotency_keys "  # noqa: S608 - our own identifiers
            f"(tenant_id, key, request_hash, mandate_id, created_at) VALUES ({key_values}))"
        )
    parts.append(" SELECT count(*) FROM events")
    return _CreateStatement("".join(parts), tuple(p.names))


async def store_created(
    db: Database,
    values: dict[str, Any],
    event: EventType,
    data: dict[str, Any],
    idempotency_row: tuple[str, str] | None,
) -> int:
    """Insert the mandate, its outbox rows and its idempotency key atomically; returns the
    number of events queued. Raises on a duplicate idempotency key (and stores nothing)."""
    if db.dialect != "postgresql":
        return await _store_with_sqlalchemy(db, values, event, data, idempotency_row)
    shared = webhooks.event_columns(values["tenant_id"], event, data, values["created_at"])
    statement = _create_statement(tuple(shared), with_key=idempotency_row is not None)
    arguments = statement.arguments(values, shared, idempotency_row)
    assert db.hot is not None  # every PostgreSQL database has one
    async with db.hot.connection() as conn:
        started, error = time.perf_counter(), ""
        try:
            queued = await conn.fetchval(statement.sql, *arguments)
        except Exception as exc:
            error = type(exc).__name__
            raise
        finally:
            if db.telemetry is not None:
                seconds = time.perf_counter() - started
                db.telemetry.finished("insert", statement.sql, seconds, error)
    return int(queued)


async def _store_with_sqlalchemy(
    db: Database,
    values: dict[str, Any],
    event: EventType,
    data: dict[str, Any],
    idempotency_row: tuple[str, str] | None,
) -> int:
    async with db.transaction() as conn:
        await conn.execute(mandates.insert(), values)
        queued = await webhooks.enqueue_event(
            conn, values["tenant_id"], event, data, values["created_at"]
        )
        if idempotency_row is not None:
            key, fingerprint = idempotency_row
            await idempotency.remember(
                conn, values["tenant_id"], key, fingerprint, values["id"], values["created_at"]
            )
    return queued
