"""/api/v1/tenants: admins create and list tenants; everyone can read their own."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, status

from mandate_vault_api import directory
from mandate_vault_api.deps import (
    ContextDep,
    PrincipalDep,
    require,
)
from mandate_vault_api.principal import Principal
from mandate_vault_api.roles import Permission, Role
from mandate_vault_api.schemas import TenantCreate, TenantOut, rows
from mandate_vault_shared.errors import NotFound
from mandate_vault_shared.telemetry import get_logger, names

router = APIRouter(prefix="/api/v1/tenants", tags=["tenants"])
log = get_logger(__name__)
TenantAdmin = Annotated[Principal, Depends(require(Permission.TENANTS_MANAGE))]


@router.post("", response_model=TenantOut, status_code=status.HTTP_201_CREATED)
async def create_tenant(
    body: TenantCreate,
    principal: TenantAdmin,
    ctx: ContextDep,
) -> TenantOut:
    """Create a tenant (admins only)."""
    async with ctx.db.transaction() as conn:
        await directory.create_tenant(conn, body.id, body.name, ctx.clock())
        tenant = await directory.get_tenant(conn, body.id)
    log.info(
        names.EVENT_USER_ACTION, action="create_tenant", user_id=principal.id, tenant_id=body.id
    )
    return TenantOut.model_validate(tenant)


@router.get("", response_model=list[TenantOut])
async def list_tenants(
    _: TenantAdmin,
    ctx: ContextDep,
) -> list[TenantOut]:
    """Every tenant (admins only)."""
    async with ctx.db.transaction() as conn:
        return rows(TenantOut, await directory.list_tenants(conn))


@router.get("/{tenant_id}", response_model=TenantOut, responses={404: {}})
async def get_tenant(
    tenant_id: str,
    principal: PrincipalDep,
    ctx: ContextDep,
) -> TenantOut:
    """A tenant: admins see any, others only their own (anything else is 404)."""
    if principal.role is not Role.ADMIN and tenant_id != principal.tenant_id:
        raise NotFound("Tenant not found.")
    async with ctx.db.transaction() as conn:
        return TenantOut.model_validate(await directory.get_tenant(conn, tenant_id))
