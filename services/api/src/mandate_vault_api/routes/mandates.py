"""/api/v1/mandates: submit (verify + store), list, read, revoke, re-verify."""

from __future__ import annotations

import base64
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Final

import orjson
from fastapi import APIRouter, Depends, Query, Request, status
from fastapi.exceptions import RequestValidationError

from mandate_vault_api import idempotency, webhooks
from mandate_vault_api import mandates as domain
from mandate_vault_api.clock import as_utc
from mandate_vault_api.creation import create_mandate as create
from mandate_vault_api.deps import (
    CALLER_OPENAPI,
    TenantCall,
    get_context,
    tenant_call,
    writer_in_tenant,
)
from mandate_vault_api.principal import Principal
from mandate_vault_api.roles import Permission
from mandate_vault_api.schemas import (
    MandateCreate,
    MandateOut,
    MandatePage,
    mandate_event_data,
    rows,
)
from mandate_vault_shared.errors import BadRequest, DomainError, PayloadTooLarge, ServiceUnavailable
from mandate_vault_shared.messages import EventType
from mandate_vault_shared.telemetry import get_logger, names
from mandate_vault_shared.web.bodies import openapi_body, parse_json_body
from mandate_vault_shared.web.responses import JsonResponse

router = APIRouter(prefix="/api/v1/mandates", tags=["mandates"])
log = get_logger(__name__)
Writer = Annotated[TenantCall, Depends(tenant_call(Permission.MANDATES_WRITE))]
Reader = Annotated[TenantCall, Depends(tenant_call(Permission.MANDATES_READ))]


_IDEMPOTENCY_KEY_DESCRIPTION: Final = (
    "Repeat a create safely: the same key returns the first result."
)
_IDEMPOTENCY_KEY_OPENAPI: Final = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {
        "anyOf": [{"type": "string", "maxLength": idempotency.MAX_KEY_LENGTH}, {"type": "null"}],
        "title": "Idempotency-Key",
        "description": _IDEMPOTENCY_KEY_DESCRIPTION,
    },
    "description": _IDEMPOTENCY_KEY_DESCRIPTION,
}
_CREATE_OPENAPI: Final = {
    **openapi_body(MandateCreate),
    **CALLER_OPENAPI,
    "parameters": [_IDEMPOTENCY_KEY_OPENAPI, *CALLER_OPENAPI["parameters"]],
}


def _idempotency_key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is not None and len(key) > idempotency.MAX_KEY_LENGTH:
        msg = f"String should have at most {idempotency.MAX_KEY_LENGTH} characters"
        loc = ("header", "Idempotency-Key")
        raise RequestValidationError([{"type": "string_too_long", "loc": loc, "msg": msg}])
    return key


def _create_endpoint(permission: Permission) -> Callable[[Request], Awaitable[JsonResponse]]:
    """The create route bound to the permission it checks. The hottest route reads its caller,
    headers and body itself (see deps.writer_in_tenant); binding the permission here keeps it on
    the endpoint, where reliability/scenarios/tenant_isolation.py finds every route's."""

    async def create_mandate(request: Request) -> JsonResponse:
        """Verify a mandate JWT with the jwt-verifier and store it with the outcome.

        A mandate that fails verification is stored too (status REJECTED, with the verifier's
        status and reason) and never becomes active. If the verifier is unavailable nothing is
        stored and the answer is 503 with `Retry-After`.
        """
        principal, tenant_id = await writer_in_tenant(request, permission)
        return await _create(request, principal, tenant_id)

    return create_mandate


async def _create(request: Request, principal: Principal, tenant_id: str) -> JsonResponse:
    ctx = await get_context(request)
    idempotency_key = _idempotency_key(request)
    body = parse_json_body(await request.body(), MandateCreate)
    if len(body.vc_jwt) > ctx.settings.max_token_bytes:  # printable ASCII: 1 byte a character
        raise PayloadTooLarge("The mandate token is too large.")
    started = time.perf_counter()
    log.info(names.EVENT_CREATE_MANDATE_STARTED, tenant_id=tenant_id, user_id=principal.id)
    try:
        created = await create(ctx.creation, body.vc_jwt, tenant_id, principal.id, idempotency_key)
    except Exception as exc:
        if isinstance(exc, DomainError) and not isinstance(exc, ServiceUnavailable):
            raise  # the caller's mistake, answered 4xx; not an operational failure
        log.error(
            names.EVENT_OPERATION_FAILED,
            operation="create_mandate",
            error=str(exc),
            error_type=type(exc).__name__,
            tenant_id=tenant_id,
        )
        raise
    if created.verification is not None:
        ctx.metrics.mandate_created(tenant_id, created.verification.status)
        log.info(
            names.EVENT_CREATE_MANDATE_COMPLETED,
            mandate_id=created.body["id"],
            tenant_id=tenant_id,
            user_id=principal.id,
            status=created.body["status"],
            verification_status=created.verification.status,
            issuer=created.verification.issuer,
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
        )
    # Already validated and in its JSON form (MandateOut): answered as is, not re-validated.
    return JsonResponse(created.body, status_code=status.HTTP_201_CREATED)


router.add_api_route(
    "",
    _create_endpoint(Permission.MANDATES_WRITE),
    methods=["POST"],
    response_model=MandateOut,
    status_code=status.HTTP_201_CREATED,
    responses={
        409: {},
        413: {},
        422: {"description": "Validation Error"},
        503: {"description": "The verifier is unavailable"},
    },
    openapi_extra=_CREATE_OPENAPI,
)


def _encode_cursor(created_at: datetime, mandate_id: str) -> str:
    raw = orjson.dumps([as_utc(created_at).isoformat(), mandate_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, mandate_id = orjson.loads(raw)
        return datetime.fromisoformat(created_at), str(mandate_id)
    except (ValueError, TypeError) as exc:
        raise BadRequest("The cursor is invalid.", code="invalid_cursor") from exc


@router.get("", response_model=MandatePage, responses={400: {}})
async def list_mandates(
    call: Reader,
    status_filter: Annotated[domain.MandateStatus | None, Query(alias="status")] = None,
    issuer: Annotated[str | None, Query(max_length=512)] = None,
    subject: Annotated[str | None, Query(max_length=512)] = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    limit: Annotated[
        int | None, Query(ge=1, description="Page size, capped by the server.")
    ] = None,
) -> MandatePage:
    """The tenant's mandates, newest first, with cursor pagination."""
    size = min(limit or call.ctx.settings.page_size_default, call.ctx.settings.page_size_max)
    filters = domain.MandateFilters(status_filter, issuer, subject, created_after, created_before)
    after = _decode_cursor(cursor) if cursor else None
    async with call.ctx.db.read() as conn:
        found = await domain.list_mandates(conn, call.tenant_id, filters, after, size + 1)
    page = found[:size]
    next_cursor = _encode_cursor(page[-1].created_at, page[-1].id) if len(found) > size else None
    return MandatePage(items=rows(MandateOut, page), next_cursor=next_cursor)


@router.get("/{mandate_id}", response_model=MandateOut, responses={404: {}})
async def get_mandate(
    mandate_id: str,
    call: Reader,
) -> MandateOut:
    """One mandate of the tenant (another tenant's id answers 404)."""
    return await call.one(MandateOut, domain.get_mandate, mandate_id)


@router.post("/{mandate_id}/revoke", response_model=MandateOut, responses={404: {}, 409: {}})
async def revoke_mandate(
    mandate_id: str,
    call: Writer,
) -> MandateOut:
    """Revoke a mandate. Revoking twice is harmless; an expired mandate cannot be revoked."""
    async with call.ctx.db.transaction() as conn:
        mandate, changed = await domain.revoke_mandate(
            conn, call.tenant_id, mandate_id, call.ctx.clock()
        )
        if changed:
            data = mandate_event_data(mandate)
            await webhooks.enqueue_event(
                conn, call.tenant_id, EventType.MANDATE_REVOKED, data, call.ctx.clock()
            )
    if changed:
        call.ctx.relay.wake()
        log.info(
            names.EVENT_USER_ACTION,
            action="revoke_mandate",
            user_id=call.principal.id,
            mandate_id=mandate_id,
            tenant_id=call.tenant_id,
        )
    return MandateOut.model_validate(mandate)


@router.post("/{mandate_id}/verify", response_model=MandateOut, responses={404: {}, 503: {}})
async def reverify_mandate(
    mandate_id: str,
    call: Writer,
) -> MandateOut:
    """Verify the stored token again (issuer keys or trust may have changed).

    An active mandate that no longer verifies becomes REJECTED and emits
    MandateVerificationFailed.
    """
    async with call.ctx.db.read() as conn:
        current = await domain.get_mandate(conn, call.tenant_id, mandate_id)
    verification = await call.ctx.verifier.verify(
        current.vc_jwt, await call.ctx.creation.trusted_issuers(call.tenant_id)
    )
    async with call.ctx.db.transaction() as conn:
        mandate, previous_status = await domain.apply_verification(
            conn, call.tenant_id, mandate_id, verification, call.ctx.clock()
        )
        lost = previous_status == domain.MandateStatus.ACTIVE and mandate.status != previous_status
        if lost:
            event, data = EventType.MANDATE_VERIFICATION_FAILED, mandate_event_data(mandate)
            await webhooks.enqueue_event(conn, call.tenant_id, event, data, call.ctx.clock())
    if lost:
        call.ctx.relay.wake()
    log.info(
        names.EVENT_USER_ACTION,
        action="reverify_mandate",
        user_id=call.principal.id,
        mandate_id=mandate_id,
        tenant_id=call.tenant_id,
        previous_status=previous_status,
        status=mandate.status,
        verification_status=verification.status,
    )
    return MandateOut.model_validate(mandate)
