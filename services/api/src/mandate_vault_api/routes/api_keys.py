"""/api/v1/api-keys: keys bound to one tenant and role, shown once, stored hashed."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, status

from mandate_vault_api import directory
from mandate_vault_api.deps import TenantCall, tenant_call
from mandate_vault_api.revocation import API_KEY, announce
from mandate_vault_api.roles import Permission
from mandate_vault_api.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyOut
from mandate_vault_shared.telemetry import get_logger, names

router = APIRouter(prefix="/api/v1/api-keys", tags=["api keys"])
log = get_logger(__name__)
KeyAdmin = Annotated[TenantCall, Depends(tenant_call(Permission.API_KEYS_MANAGE))]


@router.post("", response_model=ApiKeyCreated, status_code=status.HTTP_201_CREATED)
async def create_api_key(
    body: ApiKeyCreate,
    call: KeyAdmin,
) -> ApiKeyCreated:
    """Create an API key. The `key` field is shown only in this answer."""
    directory.check_grant(call.principal, body.role)
    async with call.ctx.db.transaction() as conn:
        key_id, key = await directory.create_api_key(
            conn, call.tenant_id, body.name, body.role, call.principal.id, call.ctx.clock()
        )
        created = next(
            r for r in await directory.list_api_keys(conn, call.tenant_id) if r.id == key_id
        )
    log.info(
        names.EVENT_USER_ACTION,
        action="create_api_key",
        user_id=call.principal.id,
        api_key_id=key_id,
        tenant_id=call.tenant_id,
    )
    return ApiKeyCreated.model_validate({**created._mapping, "key": key})


@router.get("", response_model=list[ApiKeyOut])
async def list_api_keys(
    call: KeyAdmin,
) -> list[ApiKeyOut]:
    """The tenant's API keys (never the keys themselves)."""
    return await call.all(ApiKeyOut, directory.list_api_keys)


@router.delete("/{key_id}", response_model=ApiKeyOut, responses={404: {}})
async def revoke_api_key(
    key_id: str,
    call: KeyAdmin,
) -> ApiKeyOut:
    """Revoke an API key; it stops working immediately."""
    async with call.ctx.db.transaction() as conn:
        row = await directory.revoke_api_key(conn, call.tenant_id, key_id, call.ctx.clock())
        await announce(conn, API_KEY, row.key_hash)
    call.ctx.revocations.apply(API_KEY, row.key_hash)
    log.info(
        names.EVENT_USER_ACTION,
        action="revoke_api_key",
        user_id=call.principal.id,
        api_key_id=key_id,
        tenant_id=call.tenant_id,
    )
    return ApiKeyOut.model_validate(row)
