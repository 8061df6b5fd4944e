"""/api/v1/auth: login, refresh, logout, who am I."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from mandate_vault_api import auth
from mandate_vault_api.credentials import digest
from mandate_vault_api.deps import (
    ContextDep,
    PrincipalDep,
)
from mandate_vault_api.revocation import SESSION
from mandate_vault_api.schemas import LoginRequest, PrincipalOut, RefreshRequest, TokenResponse
from mandate_vault_shared.errors import Unauthorized
from mandate_vault_shared.telemetry import get_logger, names

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])
log = get_logger(__name__)


def _client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


@router.post(
    "/login",
    response_model=TokenResponse,
    responses={401: {"description": "Invalid credentials"}, 429: {"description": "Locked out"}},
)
async def login(
    body: LoginRequest,
    request: Request,
    ctx: ContextDep,
) -> TokenResponse:
    """Exchange e-mail and password for a short-lived access token and a refresh token.

    Five failures within 15 minutes lock the address for 15 minutes (configurable); while
    locked every attempt answers 429 with `Retry-After`, whatever the password.
    """
    await ctx.limiter.check(
        ("login_client", _client_address(request) or "unknown"),
        # by digest, as the lockout table: no e-mail address is kept in Redis
        ("login_account", digest(auth.normalize_email(body.email))),
    )
    outcome = await auth.attempt_login(ctx.db, body.email, body.password, ctx.policy, ctx.clock())
    ctx.metrics.auth_attempt(outcome.result.value)
    log.info(
        names.EVENT_AUTH_ATTEMPT,
        action="login",
        result=outcome.result.value,
        success=outcome.result is auth.AuthResult.SUCCESS,
        user_id=outcome.user_id,
        tenant_id=outcome.tenant_id,
        ip_address=_client_address(request),
    )
    tokens = outcome.tokens_or_raise()
    return TokenResponse(
        access_token=tokens.access_token,
        refresh_token=tokens.refresh_token,
        expires_in=tokens.expires_in,
    )


@router.post("/refresh", response_model=TokenResponse, responses={401: {}})
async def refresh(
    body: RefreshRequest,
    ctx: ContextDep,
) -> TokenResponse:
    """Rotate a refresh token: the one presented stops working, a new pair is returned."""
    async with ctx.db.transaction() as conn:
        tokens, revoked = await auth.refresh(conn, body.refresh_token, ctx.policy, ctx.clock())
    ctx.revocations.apply(SESSION, revoked)
    return TokenResponse(
        access_token=tokens.access_token,
        refresh_token=tokens.refresh_token,
        expires_in=tokens.expires_in,
    )


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, responses={401: {}})
async def logout(
    principal: PrincipalDep,
    ctx: ContextDep,
) -> Response:
    """Revoke the current session: its access and refresh tokens stop working at once."""
    if principal.session_id is None:
        raise Unauthorized("API keys have no session to log out of.", code="not_a_session")
    async with ctx.db.transaction() as conn:
        await auth.logout(conn, principal.session_id, ctx.clock())
    ctx.revocations.apply(SESSION, principal.session_id)
    log.info(names.EVENT_USER_ACTION, action="logout", user_id=principal.id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/me", response_model=PrincipalOut)
async def me(principal: PrincipalDep) -> PrincipalOut:
    """The caller as the API sees it."""
    return PrincipalOut(
        kind=principal.kind, id=principal.id, tenant_id=principal.tenant_id, role=principal.role
    )
