"""/api/v1/trusted-issuers: which issuers' mandates a tenant accepts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response, status

from mandate_vault_api import directory
from mandate_vault_api.deps import TenantCall, tenant_call
from mandate_vault_api.revocation import ISSUERS, announce
from mandate_vault_api.roles import Permission
from mandate_vault_api.schemas import IssuerCreate, IssuerOut
from mandate_vault_shared.telemetry import get_logger, names

router = APIRouter(prefix="/api/v1/trusted-issuers", tags=["trusted issuers"])
log = get_logger(__name__)
IssuerAdmin = Annotated[TenantCall, Depends(tenant_call(Permission.ISSUERS_MANAGE))]
IssuerReader = Annotated[TenantCall, Depends(tenant_call(Permission.ISSUERS_READ))]


@router.post("", response_model=IssuerOut, status_code=status.HTTP_201_CREATED, responses={409: {}})
async def add_issuer(
    body: IssuerCreate,
    call: IssuerAdmin,
) -> IssuerOut:
    """Trust an issuer DID for this tenant's mandates (its keys come from the verifier's
    truststore or its did:web document)."""
    async with call.ctx.db.transaction() as conn:
        issuer_id = await directory.add_trusted_issuer(
            conn, call.tenant_id, body.issuer, call.ctx.clock()
        )
        await announce(conn, ISSUERS, call.tenant_id)
    call.ctx.revocations.apply(ISSUERS, call.tenant_id)
    async with call.ctx.db.read() as conn:
        row = next(
            r
            for r in await directory.list_trusted_issuers(conn, call.tenant_id)
            if r.id == issuer_id
        )
    log.info(
        names.EVENT_USER_ACTION,
        action="trust_issuer",
        user_id=call.principal.id,
        issuer=body.issuer,
        tenant_id=call.tenant_id,
    )
    return IssuerOut.model_validate(row)


@router.get("", response_model=list[IssuerOut])
async def list_issuers(
    call: IssuerReader,
) -> list[IssuerOut]:
    """The issuers this tenant trusts."""
    return await call.all(IssuerOut, directory.list_trusted_issuers)


@router.delete("/{issuer_id}", status_code=status.HTTP_204_NO_CONTENT, responses={404: {}})
async def remove_issuer(
    issuer_id: str,
    call: IssuerAdmin,
) -> Response:
    """Stop trusting an issuer (existing mandates keep their status until re-verified)."""
    async with call.ctx.db.transaction() as conn:
        await directory.remove_trusted_issuer(conn, call.tenant_id, issuer_id)
        await announce(conn, ISSUERS, call.tenant_id)
    call.ctx.revocations.apply(ISSUERS, call.tenant_id)
    log.info(
        names.EVENT_USER_ACTION,
        action="untrust_issuer",
        user_id=call.principal.id,
        issuer_id=issuer_id,
        tenant_id=call.tenant_id,
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)
