"""Webhook subscriptions and the events they receive.

Events are written to the outbox in the caller's transaction — the same one that changes the
mandate — one row per subscription of the tenant that wants the event type. A relay publishes
them to Kafka afterwards (see `relay`), so an event exists if and only if its change was
committed. A disabled subscription gets its rows too: the worker records each event as failed
("subscription disabled") without sending it, so that once the subscription is enabled again the
events it missed can be recovered (`redelivery`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import orjson
from opentelemetry import propagate
from sqlalchemy import Row, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from mandate_vault_api.credentials import new_id
from mandate_vault_shared.db.schema import outbox, webhook_delivery_attempts, webhook_subscriptions
from mandate_vault_shared.errors import NotFound
from mandate_vault_shared.messages import EventType
from mandate_vault_shared.ssrf import SsrfBlocked, SsrfPolicy
from mandate_vault_shared.webhooks import SecretBox, new_event_id, new_secret, payload_bytes


def encode_event_types(event_types: Sequence[EventType]) -> str:
    return ",".join(sorted({e.value for e in event_types}))


def decode_event_types(raw: str) -> list[EventType]:
    return [EventType(value) for value in raw.split(",") if value]


async def check_webhook_url(policy: SsrfPolicy, url: str) -> None:
    """Registration-time SSRF check: the URL's shape and every address its host resolves to."""
    target = policy.check_url(url)
    host = target.raw_host or ""
    if policy.host_allowlisted(host):
        return
    try:
        ipaddress.ip_address(host.strip("[]"))
        return  # an IP literal was fully checked by check_url
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, target.port, type=socket.SOCK_STREAM
        )
    except OSError as exc:
        raise SsrfBlocked("The URL's host cannot be resolved.") from exc
    for info in infos:
        policy.check_address(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]), hostname=host)


async def create_subscription(
    conn: AsyncConnection,
    box: SecretBox,
    tenant_id: str,
    values: dict[str, Any],
    now: datetime,
) -> tuple[str, str]:
    """(subscription id, its signing secret — returned once, stored encrypted)."""
    subscription_id, secret = new_id(), new_secret()
    await conn.execute(
        webhook_subscriptions.insert().values(
            id=subscription_id,
            tenant_id=tenant_id,
            url=values["url"],
            event_types=encode_event_types(values["event_types"]),
            description=values.get("description"),
            enabled=True,
            secret_ciphertext=box.seal(secret),
            created_at=now,
            updated_at=now,
        )
    )
    return subscription_id, secret


async def get_subscription(conn: AsyncConnection, tenant_id: str, subscription_id: str) -> Row[Any]:
    row = (
        await conn.execute(
            select(webhook_subscriptions).where(
                webhook_subscriptions.c.id == subscription_id,
                webhook_subscriptions.c.tenant_id == tenant_id,
            )
        )
    ).one_or_none()
    if row is None:
        raise NotFound("Webhook subscription not found.")
    return row


async def list_subscriptions(conn: AsyncConnection, tenant_id: str) -> Sequence[Row[Any]]:
    query = (
        select(webhook_subscriptions)
        .where(webhook_subscriptions.c.tenant_id == tenant_id)
        .order_by(webhook_subscriptions.c.created_at)
    )
    return (await conn.execute(query)).all()


async def update_subscription(
    conn: AsyncConnection,
    tenant_id: str,
    subscription_id: str,
    changes: dict[str, Any],
    now: datetime,
) -> Row[Any]:
    await get_subscription(conn, tenant_id, subscription_id)
    if "event_types" in changes:
        changes["event_types"] = encode_event_types(changes["event_types"])
    if changes.get("enabled") is True:
        changes["disabled_reason"] = None
    if changes.get("enabled") is True or changes.get("url") is not None:
        changes["failing_since"] = None  # a fresh start: the endpoint's health is judged anew
    await conn.execute(
        update(webhook_subscriptions)
        .where(webhook_subscriptions.c.id == subscription_id)
        .values(**changes, updated_at=now)
    )
    return await get_subscription(conn, tenant_id, subscription_id)


async def delete_subscription(conn: AsyncConnection, tenant_id: str, subscription_id: str) -> None:
    await get_subscription(conn, tenant_id, subscription_id)
    await conn.execute(
        webhook_subscriptions.delete().where(webhook_subscriptions.c.id == subscription_id)
    )


async def rotate_secret(
    conn: AsyncConnection,
    box: SecretBox,
    tenant_id: str,
    subscription_id: str,
    window: timedelta,
    now: datetime,
) -> tuple[Row[Any], str]:
    """A new secret; the old one keeps signing (alongside) until `now + window`."""
    current = await get_subscription(conn, tenant_id, subscription_id)
    secret = new_secret()
    await conn.execute(
        update(webhook_subscriptions)
        .where(webhook_subscriptions.c.id == subscription_id)
        .values(
            secret_ciphertext=box.seal(secret),
            previous_secret_ciphertext=current.secret_ciphertext,
            previous_secret_expires_at=now + window,
            updated_at=now,
        )
    )
    return await get_subscription(conn, tenant_id, subscription_id), secret


async def list_delivery_attempts(
    conn: AsyncConnection, tenant_id: str, subscription_id: str, limit: int
) -> Sequence[Row[Any]]:
    await get_subscription(conn, tenant_id, subscription_id)
    query = (
        select(webhook_delivery_attempts)
        .where(
            webhook_delivery_attempts.c.subscription_id == subscription_id,
            webhook_delivery_attempts.c.tenant_id == tenant_id,
        )
        .order_by(
            webhook_delivery_attempts.c.attempted_at.desc(),
            webhook_delivery_attempts.c.attempt.desc(),
        )
        .limit(limit)
    )
    return (await conn.execute(query)).all()


def _current_trace_context() -> str | None:
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return orjson.dumps(carrier).decode() if carrier else None


async def enqueue_event(
    conn: AsyncConnection,
    tenant_id: str,
    event_type: EventType,
    data: dict[str, Any],
    now: datetime,
    *,
    exclude: str | None = None,
    sequence: int | None = None,
) -> int:
    """Outbox rows for every subscription (but `exclude`) that wants this event; returns how
    many."""
    query = select(webhook_subscriptions.c.id, webhook_subscriptions.c.event_types).where(
        webhook_subscriptions.c.tenant_id == tenant_id
    )
    if exclude is not None:
        query = query.where(webhook_subscriptions.c.id != exclude)
    subscriptions = (await conn.execute(query)).all()
    rows = outbox_rows(tenant_id, event_type, data, now, subscriptions, sequence)
    if rows:
        await conn.execute(outbox.insert(), rows)
    return len(rows)


def event_columns(
    tenant_id: str,
    event_type: EventType,
    data: dict[str, Any],
    now: datetime,
    sequence: int | None = None,
) -> dict[str, Any]:
    """The outbox columns an event shares across its subscriptions (all but ``event_id`` and
    ``subscription_id``, which differ per row). `sequence` defaults to the mandate's `version`,
    so one mandate's events can be put in order by the receiver."""
    order = int(data.get("version", 1)) if sequence is None else sequence
    return {
        "event_type": event_type.value,
        "tenant_id": tenant_id,
        "payload": payload_bytes(event_type.value, now, data, order).decode(),
        "trace_context": _current_trace_context(),
        "created_at": now,
    }


def outbox_rows(
    tenant_id: str,
    event_type: EventType,
    data: dict[str, Any],
    now: datetime,
    subscriptions: Iterable[Any],
    sequence: int | None = None,
) -> list[dict[str, Any]]:
    """One outbox row per subscription (rows of id, event_types) that wants `event_type`."""
    wanted = [s[0] for s in subscriptions if event_type.value in s[1].split(",")]
    if not wanted:
        return []
    shared = event_columns(tenant_id, event_type, data, now, sequence)
    return [
        {"event_id": new_event_id(), "subscription_id": subscription_id, **shared}
        for subscription_id in wanted
    ]
