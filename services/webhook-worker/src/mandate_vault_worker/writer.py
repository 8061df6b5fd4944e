"""One writer lane for the delivery log: group commit across deliveries.

Every delivery outcome (attempt, parked job, skipped job) is handed to `DeliveryWriter.write`,
which returns once it is committed. One task writes: it takes everything queued, writes it in
one transaction of a few multi-row statements, and wakes the writers; what arrives meanwhile
goes in the next transaction. So a busy worker spends one database round per batch rather than
several transactions per delivery, and on SQLite (``make run``) the worker never has two write
transactions of its own competing for the file lock.

If a batch fails, its writes are tried one by one, so one bad row cannot hold the others; a
write that still fails raises to its caller, which tries again later (the database may be down).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

import asyncpg
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from mandate_vault_shared.telemetry import get_logger
from mandate_vault_worker import pg_fast, store
from mandate_vault_worker.pg_fast import PgFastPath
from mandate_vault_worker.store import StateWrite

_MAX_BATCH: Final = 500
# One row's fault, worth writing the batch one by one (anything else: the database is away).
_ROW_ERRORS: Final = (
    IntegrityError,
    DataError,
    asyncpg.IntegrityConstraintViolationError,
    asyncpg.DataError,
)

log = get_logger(__name__)

_Pending = tuple[StateWrite, "asyncio.Future[None]"]


class DeliveryWriter:
    def __init__(
        self, engine: AsyncEngine, fast: PgFastPath | None = None, max_batch: int = _MAX_BATCH
    ) -> None:
        self._engine = engine
        self._fast = fast
        self._max_batch = max_batch
        self._queue: list[_Pending] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.batches = 0  # transactions written (for tests and diagnostics)

    async def write(self, write: StateWrite) -> None:
        """Queue `write` and wait until it is committed (raises if it could not be)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((write, future))
        self._idle.clear()
        self._wake.set()
        await future

    async def run(self) -> None:
        """The writer task: runs until cancelled."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch, self._queue = (
                    self._queue[: self._max_batch],
                    self._queue[self._max_batch :],
                )
                await self._flush(batch)
            self._idle.set()

    async def idle(self) -> None:
        """Wait until everything queued so far is written (or failed)."""
        await self._idle.wait()

    async def _flush(self, batch: list[_Pending]) -> None:
        fast = self._fast
        if fast is None:
            await self._commit(batch, self._transaction)
            return
        quick = [p for p in batch if pg_fast.handles(p[0])]
        rest = [p for p in batch if not pg_fast.handles(p[0])]
        if quick:
            await self._commit(quick, fast.write)
        if rest:
            await self._commit(rest, self._transaction)

    async def _transaction(self, writes: Sequence[StateWrite]) -> None:
        async with self._engine.begin() as conn:
            await store.write_batch(conn, writes)

    async def _commit(
        self,
        batch: list[_Pending],
        how: Callable[[Sequence[StateWrite]], Awaitable[None]],
    ) -> None:
        try:
            await how([write for write, _ in batch])
        except Exception as exc:
            log.warning("delivery_log_write_failed", rows=len(batch), error_type=type(exc).__name__)
            if len(batch) == 1 or not isinstance(exc, _ROW_ERRORS):
                _settle(batch, exc)  # e.g. the database is down: the callers try again later
                return
            for pending in batch:
                await self._commit([pending], how)
            return
        self.batches += 1
        _settle(batch, None)


def _settle(batch: list[_Pending], error: Exception | None) -> None:
    for _, future in batch:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
