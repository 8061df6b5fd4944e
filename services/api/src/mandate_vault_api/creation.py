"""Creating a mandate: verify, then store the mandate, its webhook events and its idempotency
key in one transaction. Plain async code; the route only adds HTTP, logs and metrics."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from asyncpg import UniqueViolationError
from sqlalchemy.exc import IntegrityError

from mandate_vault_api import directory, idempotency
from mandate_vault_api import mandates as domain
from mandate_vault_api.cache import TtlCache
from mandate_vault_api.clock import Clock
from mandate_vault_api.database import Database
from mandate_vault_api.fast_writes import store_created
from mandate_vault_api.relay import OutboxRelay
from mandate_vault_api.schemas import mandate_event_data
from mandate_vault_api.verifier_client import Verification, VerifierClient
from mandate_vault_shared.messages import EventType

# A concurrent create with the same Idempotency-Key committed first (either driver's error).
DUPLICATE_ERRORS = (IntegrityError, UniqueViolationError)


@dataclass(frozen=True)
class Creation:
    db: Database
    verifier: VerifierClient
    relay: OutboxRelay
    issuers: TtlCache[list[str]]
    clock: Clock

    async def trusted_issuers(self, tenant_id: str) -> list[str]:
        """The tenant's trusted issuer DIDs (cached; adding or removing one clears it)."""

        async def load() -> list[str]:
            async with self.db.read() as conn:
                return await directory.trusted_issuer_ids(conn, tenant_id)

        return await self.issuers.get_or_load(tenant_id, load)


@dataclass(frozen=True)
class Created:
    mandate: Mapping[str, Any]  # the stored row
    body: dict[str, Any]  # the mandate as the API answers it (and webhook payloads carry it)
    verification: Verification | None  # None: an earlier request with the same key made it


async def _previous(
    creation: Creation, tenant_id: str, key: str, fingerprint: str
) -> Created | None:
    async with creation.db.read() as conn:
        previous = await idempotency.find_previous(conn, tenant_id, key, fingerprint)
        if previous is None:
            return None
        row = await domain.get_mandate(conn, tenant_id, previous)
    return Created(dict(row._mapping), mandate_event_data(row), None)


async def create_mandate(
    creation: Creation,
    token: str,
    tenant_id: str,
    created_by: str,
    idempotency_key: str | None,
) -> Created:
    fingerprint = idempotency.request_fingerprint(token)
    if idempotency_key is not None:
        previous = await _previous(creation, tenant_id, idempotency_key, fingerprint)
        if previous is not None:
            return previous
    verification = await creation.verifier.verify(token, await creation.trusted_issuers(tenant_id))
    values = domain.new_mandate(verification, token, tenant_id, created_by, creation.clock())
    event = (
        EventType.MANDATE_CREATED if verification.valid else EventType.MANDATE_VERIFICATION_FAILED
    )
    idempotency_row = (idempotency_key, fingerprint) if idempotency_key is not None else None
    body = mandate_event_data(values)
    try:
        queued = await store_created(creation.db, values, event, body, idempotency_row)
    except DUPLICATE_ERRORS:
        # A concurrent request with the same key won the race: answer with its mandate.
        previous = (
            await _previous(creation, tenant_id, idempotency_key, fingerprint)
            if idempotency_key is not None
            else None
        )
        if previous is None:
            raise
        return previous
    if queued:
        creation.relay.wake()
    return Created(values, body, verification)
