"""/api/v1/users: tenant admins (and admins) manage the users of a tenant."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, status

from mandate_vault_api import directory
from mandate_vault_api.deps import TenantCall, tenant_call
from mandate_vault_api.revocation import USER, announce
from mandate_vault_api.roles import Permission
from mandate_vault_api.schemas import UserCreate, UserOut, UserUpdate
from mandate_vault_shared.telemetry import get_logger, names

router = APIRouter(prefix="/api/v1/users", tags=["users"])
log = get_logger(__name__)
UserAdmin = Annotated[TenantCall, Depends(tenant_call(Permission.USERS_MANAGE))]


@router.post("", response_model=UserOut, status_code=status.HTTP_201_CREATED, responses={409: {}})
async def create_user(
    body: UserCreate,
    call: UserAdmin,
) -> UserOut:
    """Create a user in the tenant; nobody grants a role above their own."""
    directory.check_grant(call.principal, body.role)
    async with call.ctx.db.transaction() as conn:
        user_id = await directory.create_user(
            conn, call.tenant_id, body.email, body.password, body.role, call.ctx.clock()
        )
        user = await directory.get_user(conn, call.tenant_id, user_id)
    log.info(
        names.EVENT_USER_ACTION,
        action="create_user",
        user_id=call.principal.id,
        target_user_id=user_id,
        role=body.role.value,
        tenant_id=call.tenant_id,
    )
    return UserOut.model_validate(user)


@router.get("", response_model=list[UserOut])
async def list_users(
    call: UserAdmin,
) -> list[UserOut]:
    """The tenant's users."""
    return await call.all(UserOut, directory.list_users)


@router.get("/{user_id}", response_model=UserOut, responses={404: {}})
async def get_user(
    user_id: str,
    call: UserAdmin,
) -> UserOut:
    """One user of the tenant."""
    return await call.one(UserOut, directory.get_user, user_id)


@router.patch("/{user_id}", response_model=UserOut, responses={403: {}, 404: {}})
async def update_user(
    user_id: str,
    body: UserUpdate,
    call: UserAdmin,
) -> UserOut:
    """Change a user's role or disable them (disabled users cannot log in)."""
    changes: dict[str, Any] = body.model_dump(exclude_none=True)
    if "role" in changes:
        changes["role"] = changes["role"].value
    async with call.ctx.db.transaction() as conn:
        user = await directory.update_user(
            conn, call.principal, call.tenant_id, user_id, changes, call.ctx.clock()
        )
        await announce(conn, USER, user_id)
    call.ctx.revocations.apply(USER, user_id)
    log.info(
        names.EVENT_USER_ACTION,
        action="update_user",
        user_id=call.principal.id,
        target_user_id=user_id,
        changes=sorted(changes),
        tenant_id=call.tenant_id,
    )
    return UserOut.model_validate(user)
