"""/api/v1/trusted-issuers: which issuers' mandates a tenant accepts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response, status

from mandate_vault_api import directory
from mandate_vault_api.deps import (
    ContextDep,
    TenantDep,
    require,
)
from mandate_vault_api.principal import Principal
from mandate_vault_api.revocation import ISSUERS, announce
from mandate_vault_api.roles import Permission
from mandate_vault_api.schemas import IssuerCreate, IssuerOut, rows
from mandate_vault_shared.telemetry import get_logger, names

router = APIRouter(prefix="/api/v1/trusted-issuers", tags=["trusted issuers"])
log = get_logger(__name__)
IssuerAdmin = Annotated[Principal, Depends(require(Permission.ISSUERS_MANAGE))]
IssuerReader = Annotated[Principal, Depends(require(Permission.ISSUERS_READ))]


@router.post("", response_model=IssuerOut, status_code=status.HTTP_201_CREATED, responses={409: {}})
async def add_issuer(
    body: IssuerCreate,
    principal: IssuerAdmin,
    tenant_id: TenantDep,
    ctx: ContextDep,
) -> IssuerOut:
    """Trust an issuer DID for this tenant's mandates (its keys come from the verifier's
    truststore or its did:web document)."""
    async with ctx.db.transaction() as conn:
        issuer_id = await directory.add_trusted_issuer(conn, tenant_id, body.issuer, ctx.clock())
        await announce(conn, ISSUERS, tenant_id)
    ctx.revocations.apply(ISSUERS, tenant_id)
    async with ctx.db.read() as conn:
        row = next(
            r for r in await directory.list_trusted_issuers(conn, tenant_id) if r.id == issuer_id
        )
    log.info(
        names.EVENT_USER_ACTION,
        action="trust_issuer",
        user_id=principal.id,
        issuer=body.issuer,
        tenant_id=tenant_id,
    )
    return IssuerOut.model_validate(row)


@router.get("", response_model=list[IssuerOut])
async def list_issuers(
    _: IssuerReader,
    tenant_id: TenantDep,
    ctx: ContextDep,
) -> list[IssuerOut]:
    """The issuers this tenant trusts."""
    async with ctx.db.transaction() as conn:
        return rows(IssuerOut, await directory.list_trusted_issuers(conn, tenant_id))


@router.delete("/{issuer_id}", status_code=status.HTTP_204_NO_CONTENT, responses={404: {}})
async def remove_issuer(
    issuer_id: str,
    principal: IssuerAdmin,
    tenant_id: TenantDep,
    ctx: ContextDep,
) -> Response:
    """Stop trusting an issuer (existing mandates keep their status until re-verified)."""
    async with ctx.db.transaction() as conn:
        await directory.remove_trusted_issuer(conn, tenant_id, issuer_id)
        await announce(conn, ISSUERS, tenant_id)
    ctx.revocations.apply(ISSUERS, tenant_id)
    log.info(
        names.EVENT_USER_ACTION,
        action="untrust_issuer",
        user_id=principal.id,
        issuer_id=issuer_id,
        tenant_id=tenant_id,
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)
