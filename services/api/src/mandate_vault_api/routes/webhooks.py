"""/api/v1/webhooks: subscriptions, secret rotation and the delivery log."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response, status

from mandate_vault_api import webhooks
from mandate_vault_api.deps import TenantCall, tenant_call
from mandate_vault_api.principal import Principal
from mandate_vault_api.revocation import SUBSCRIPTION, announce
from mandate_vault_api.roles import Permission
from mandate_vault_api.schemas import (
    DeliveryAttemptOut,
    WebhookCreate,
    WebhookCreated,
    WebhookOut,
    WebhookUpdate,
    rows,
)
from mandate_vault_shared.telemetry import get_logger, names

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])
log = get_logger(__name__)
Writer = Annotated[TenantCall, Depends(tenant_call(Permission.WEBHOOKS_WRITE))]
Reader = Annotated[TenantCall, Depends(tenant_call(Permission.WEBHOOKS_READ))]


def _audit(action: str, principal: Principal, tenant_id: str, subscription_id: str) -> None:
    log.info(
        names.EVENT_USER_ACTION,
        action=action,
        user_id=principal.id,
        subscription_id=subscription_id,
        tenant_id=tenant_id,
    )


@router.post(
    "", response_model=WebhookCreated, status_code=status.HTTP_201_CREATED, responses={422: {}}
)
async def create_webhook(
    body: WebhookCreate,
    call: Writer,
) -> WebhookCreated:
    """Subscribe a URL to mandate events. The signing `secret` is shown only in this answer.

    The URL must pass the SSRF guard (https only in production; no private, loopback or
    metadata addresses, also after DNS resolution).
    """
    await webhooks.check_webhook_url(call.ctx.settings.ssrf_policy, body.url)
    async with call.ctx.db.transaction() as conn:
        subscription_id, secret = await webhooks.create_subscription(
            conn, call.ctx.box, call.tenant_id, body.model_dump(), call.ctx.clock()
        )
        row = await webhooks.get_subscription(conn, call.tenant_id, subscription_id)
    _audit("create_webhook", call.principal, call.tenant_id, subscription_id)
    return WebhookCreated.model_validate({**row._mapping, "secret": secret})


@router.get("", response_model=list[WebhookOut])
async def list_webhooks(
    call: Reader,
) -> list[WebhookOut]:
    """The tenant's subscriptions (never their secrets)."""
    return await call.all(WebhookOut, webhooks.list_subscriptions)


@router.get("/{subscription_id}", response_model=WebhookOut, responses={404: {}})
async def get_webhook(
    subscription_id: str,
    call: Reader,
) -> WebhookOut:
    """One subscription."""
    return await call.one(WebhookOut, webhooks.get_subscription, subscription_id)


@router.patch("/{subscription_id}", response_model=WebhookOut, responses={404: {}, 422: {}})
async def update_webhook(
    subscription_id: str,
    body: WebhookUpdate,
    call: Writer,
) -> WebhookOut:
    """Change the URL, event types or description, or re-enable a disabled subscription."""
    changes: dict[str, Any] = body.model_dump(exclude_unset=True)
    if changes.get("url") is not None:
        await webhooks.check_webhook_url(call.ctx.settings.ssrf_policy, changes["url"])
    changes = {k: v for k, v in changes.items() if v is not None or k == "description"}
    async with call.ctx.db.transaction() as conn:
        row = await webhooks.update_subscription(
            conn, call.tenant_id, subscription_id, changes, call.ctx.clock()
        )
        await announce(conn, SUBSCRIPTION, subscription_id)
    _audit("update_webhook", call.principal, call.tenant_id, subscription_id)
    return WebhookOut.model_validate(row)


@router.delete("/{subscription_id}", status_code=status.HTTP_204_NO_CONTENT, responses={404: {}})
async def delete_webhook(
    subscription_id: str,
    call: Writer,
) -> Response:
    """Delete a subscription; undelivered events for it are dropped by the worker."""
    async with call.ctx.db.transaction() as conn:
        await webhooks.delete_subscription(conn, call.tenant_id, subscription_id)
        await announce(conn, SUBSCRIPTION, subscription_id)
    _audit("delete_webhook", call.principal, call.tenant_id, subscription_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{subscription_id}/rotate-secret", response_model=WebhookCreated, responses={404: {}})
async def rotate_webhook_secret(
    subscription_id: str,
    call: Writer,
) -> WebhookCreated:
    """Issue a new signing secret, shown once. Until `previous_secret_expires_at` every
    delivery carries two signatures, one per secret, so receivers can switch without a gap."""
    window = timedelta(seconds=call.ctx.settings.webhook_secret_rotation_seconds)
    async with call.ctx.db.transaction() as conn:
        row, secret = await webhooks.rotate_secret(
            conn, call.ctx.box, call.tenant_id, subscription_id, window, call.ctx.clock()
        )
        await announce(conn, SUBSCRIPTION, subscription_id)
    _audit("rotate_webhook_secret", call.principal, call.tenant_id, subscription_id)
    return WebhookCreated.model_validate({**row._mapping, "secret": secret})


@router.get(
    "/{subscription_id}/deliveries", response_model=list[DeliveryAttemptOut], responses={404: {}}
)
async def list_deliveries(
    subscription_id: str,
    call: Reader,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[DeliveryAttemptOut]:
    """Every delivery attempt, newest first: time, status code, latency, error, outcome."""
    async with call.ctx.db.transaction() as conn:
        found = await webhooks.list_delivery_attempts(conn, call.tenant_id, subscription_id, limit)
    return rows(DeliveryAttemptOut, found)
