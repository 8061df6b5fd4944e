"""Dependencies: the lifespan's clients, the caller, and permission checks."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any, TypedDict, cast

from fastapi import Depends, Header, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from mandate_vault_api.auth import Authenticator, AuthPolicy
from mandate_vault_api.cache import TtlCache
from mandate_vault_api.clock import Clock
from mandate_vault_api.creation import Creation
from mandate_vault_api.database import Database
from mandate_vault_api.metrics import ApiMetrics
from mandate_vault_api.principal import Principal
from mandate_vault_api.relay import OutboxRelay
from mandate_vault_api.roles import Permission
from mandate_vault_api.settings import ApiSettings
from mandate_vault_api.verifier_client import VerifierClient
from mandate_vault_shared.errors import Unauthorized
from mandate_vault_shared.telemetry.logs import bind_context
from mandate_vault_shared.telemetry.sentry import set_identity
from mandate_vault_shared.webhooks import SecretBox


class ApiState(TypedDict):
    settings: ApiSettings
    db: Database
    verifier: VerifierClient
    metrics: ApiMetrics
    clock: Clock
    auth_policy: AuthPolicy
    relay: OutboxRelay
    secret_box: SecretBox
    authenticator: Authenticator
    issuer_cache: TtlCache[list[str]]


def _state(request: Request) -> ApiState:
    # uvicorn copies the lifespan's state into every request's scope
    return cast(ApiState, request.scope["state"])


def get_db(request: Request) -> Database:
    return _state(request)["db"]


def get_settings(request: Request) -> ApiSettings:
    return _state(request)["settings"]


def get_verifier(request: Request) -> VerifierClient:
    return _state(request)["verifier"]


def get_metrics(request: Request) -> ApiMetrics:
    return _state(request)["metrics"]


def get_clock(request: Request) -> Clock:
    return _state(request)["clock"]


def get_policy(request: Request) -> AuthPolicy:
    return _state(request)["auth_policy"]


def get_authenticator(request: Request) -> Authenticator:
    return _state(request)["authenticator"]


def get_issuer_cache(request: Request) -> TtlCache[list[str]]:
    return _state(request)["issuer_cache"]


def get_relay(request: Request) -> OutboxRelay:
    return _state(request)["relay"]


def get_secret_box(request: Request) -> SecretBox:
    return _state(request)["secret_box"]


DatabaseDep = Annotated[Database, Depends(get_db)]
SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
VerifierDep = Annotated[VerifierClient, Depends(get_verifier)]
MetricsDep = Annotated[ApiMetrics, Depends(get_metrics)]
ClockDep = Annotated[Clock, Depends(get_clock)]
PolicyDep = Annotated[AuthPolicy, Depends(get_policy)]
RelayDep = Annotated[OutboxRelay, Depends(get_relay)]


def get_creation(request: Request) -> Creation:
    state = _state(request)
    return Creation(
        state["db"], state["verifier"], state["relay"], state["issuer_cache"], state["clock"]
    )


CreationDep = Annotated[Creation, Depends(get_creation)]
AuthenticatorDep = Annotated[Authenticator, Depends(get_authenticator)]
IssuerCacheDep = Annotated[TtlCache[list[str]], Depends(get_issuer_cache)]
SecretBoxDep = Annotated[SecretBox, Depends(get_secret_box)]

_bearer = HTTPBearer(auto_error=False, description="Access token from /api/v1/auth/login")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="An `mvk_` API key")


async def get_principal(
    authenticator: AuthenticatorDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    api_key: Annotated[str | None, Security(_api_key)],
) -> Principal:
    if bearer is not None:
        principal = await authenticator.from_bearer(bearer.credentials)
    elif api_key:
        principal = await authenticator.from_api_key(api_key)
    else:
        raise Unauthorized
    bind_context(tenant_id=principal.tenant_id, principal_id=principal.id)
    set_identity(user_id=principal.id, tenant_id=principal.tenant_id)
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def require(permission: Permission) -> Callable[..., Coroutine[Any, Any, Principal]]:
    async def check(principal: PrincipalDep) -> Principal:
        principal.require(permission)
        return principal

    return check


def acting_tenant(
    principal: PrincipalDep,
    x_tenant_id: Annotated[
        str | None,
        Header(description="Admins only: act on this tenant instead of their own."),
    ] = None,
) -> str:
    return principal.acting_tenant(x_tenant_id)


TenantDep = Annotated[str, Depends(acting_tenant)]
