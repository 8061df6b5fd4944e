"""/api/v1/webhooks/{subscription_id}/events and /recover: a subscription's events, each
event's attempts, and redelivery (one event, or everything that failed since a time).

Redelivery requests are rate-limited per tenant (``API_RATE_LIMIT_REDELIVERY_PER_MINUTE``),
logged as `webhook_redelivery_requested` and counted by the worker that takes them up
(`webhook_redeliveries_total`). See `mandate_vault_api.redelivery`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, status

from mandate_vault_api import redelivery
from mandate_vault_api.deps import TenantCall, tenant_call
from mandate_vault_api.redelivery import Kind, Selection, Source
from mandate_vault_api.roles import Permission
from mandate_vault_api.schemas import (
    DeliveryAttemptOut,
    DeliveryOut,
    IsoTime,
    RecoverOut,
    RecoverRequest,
    RedeliveryOut,
    rows,
)
from mandate_vault_api.settings import REDELIVERY_SCOPE
from mandate_vault_api.webhooks import get_subscription

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])
Writer = Annotated[TenantCall, Depends(tenant_call(Permission.WEBHOOKS_WRITE))]
Reader = Annotated[TenantCall, Depends(tenant_call(Permission.WEBHOOKS_READ))]
# Ids are printable ASCII (`msg_...`, UUIDs): anything else cannot name a stored row.
_ID_PATTERN = r"^[!-~]{1,64}$"
SubscriptionId = Annotated[str, Path(pattern=_ID_PATTERN)]
EventId = Annotated[str, Path(pattern=_ID_PATTERN, description="The event's `webhook-id`")]
StatusFilter = Annotated[
    str | None,
    Query(
        alias="status",
        pattern="^(retrying|succeeded|failed|dead_lettered)$",
        description="Only events in this state",
    ),
]


@router.get(
    "/{subscription_id}/events", response_model=list[DeliveryOut], responses={404: {}, 422: {}}
)
async def list_events(
    subscription_id: SubscriptionId,
    call: Reader,
    status_filter: StatusFilter = None,
    since: Annotated[IsoTime | None, Query(description="Created at or after (ISO 8601)")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[DeliveryOut]:
    """The subscription's events, newest first, and where each delivery stands."""
    selection = Selection(
        call.tenant_id,
        subscription_id,
        since=since,
        statuses=(status_filter,) if status_filter else (),
    )
    async with call.ctx.db.read() as conn:
        await get_subscription(conn, call.tenant_id, subscription_id)
        found = await redelivery.list_deliveries(conn, selection, limit)
    return rows(DeliveryOut, found)


@router.get(
    "/{subscription_id}/events/{event_id}/attempts",
    response_model=list[DeliveryAttemptOut],
    responses={404: {}, 422: {}},
)
async def list_event_attempts(
    subscription_id: SubscriptionId,
    event_id: EventId,
    call: Reader,
) -> list[DeliveryAttemptOut]:
    """Every attempt of one event, oldest first: status, what the endpoint answered (the
    first 1 KiB of its body, redacted), its `Retry-After`, the duration and the error."""
    async with call.ctx.db.read() as conn:
        await redelivery.get_delivery(conn, call.tenant_id, subscription_id, event_id)
        return rows(DeliveryAttemptOut, await redelivery.list_attempts(conn, event_id))


@router.post(
    "/{subscription_id}/events/{event_id}/retry",
    response_model=RedeliveryOut,
    status_code=status.HTTP_202_ACCEPTED,
    responses={404: {}, 409: {"description": "The subscription is disabled"}, 422: {}, 429: {}},
)
async def retry_event(
    subscription_id: SubscriptionId,
    event_id: EventId,
    call: Writer,
) -> RedeliveryOut:
    """Deliver one finished event again (failed, dead-lettered, or even succeeded), with the
    same `webhook-id` and body. Asking again while it is scheduled or in flight does nothing
    more (`scheduled: false`)."""
    await call.ctx.limiter.check((REDELIVERY_SCOPE, call.tenant_id))
    async with call.ctx.db.transaction() as conn:
        done = await redelivery.retry(
            conn, call.tenant_id, subscription_id, event_id, call.ctx.clock(), Source.API
        )
    selection = Selection(call.tenant_id, subscription_id, (event_id,))
    scheduled = [event_id] if done.scheduled else []
    redelivery.audit(Source.API, Kind.RETRY, call.principal.id, selection, scheduled)
    return RedeliveryOut(event_id=done.event_id, status=done.status, scheduled=done.scheduled)


@router.post(
    "/{subscription_id}/recover",
    response_model=RecoverOut,
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        404: {},
        409: {"description": "The subscription is disabled"},
        422: {"description": "`since` is malformed, without an offset, or in the future"},
        429: {},
    },
)
async def recover_events(
    subscription_id: SubscriptionId,
    body: RecoverRequest,
    call: Writer,
) -> RecoverOut:
    """Deliver again every failed or dead-lettered event of the subscription created since
    `since` (e.g. after an outage of the endpoint, or after re-enabling it). Repeating the
    request schedules only what is not already scheduled."""
    await call.ctx.limiter.check((REDELIVERY_SCOPE, call.tenant_id))
    async with call.ctx.db.transaction() as conn:
        scheduled = await redelivery.recover(
            conn, call.tenant_id, subscription_id, body.since, call.ctx.clock(), Source.API
        )
    selection = Selection(call.tenant_id, subscription_id, since=body.since)
    redelivery.audit(Source.API, Kind.RECOVER, call.principal.id, selection, scheduled)
    return RecoverOut(since=body.since, scheduled=len(scheduled))
