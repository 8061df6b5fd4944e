"""What the worker does with one job: plain async functions, safe to run twice.

First attempts come from Kafka (`handle_job`); retries come from the delivery table when they
fall due (`run_due_retries`). Retries live in the database rather than in retry topics because
the schedule spans seconds to hours: a due time per row needs no topic per delay tier, never
blocks a partition behind a slow message, survives restarts, and any worker can pick it up.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import orjson
from opentelemetry import context as otel_context
from opentelemetry import propagate
from opentelemetry.trace import SpanKind, Tracer
from sqlalchemy.ext.asyncio import AsyncEngine
from yarl import URL

from mandate_vault_shared.messages import EventType, WebhookJob
from mandate_vault_shared.telemetry import get_logger, names
from mandate_vault_shared.webhooks import SecretBox
from mandate_vault_worker import store
from mandate_vault_worker.dead_letter import DeadLetters, parse_origin
from mandate_vault_worker.delivery import AttemptResult, Outcome, attempt_delivery
from mandate_vault_worker.metrics import FAILED, SUCCESS, WorkerMetrics
from mandate_vault_worker.settings import WorkerSettings

log = get_logger(__name__)
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class WorkerDeps:
    settings: WorkerSettings
    engine: AsyncEngine
    session: aiohttp.ClientSession
    box: SecretBox
    tracer: Tracer
    dead_letters: DeadLetters
    metrics: WorkerMetrics
    clock: Clock = utc_now


def _current_context() -> str | None:
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return orjson.dumps(carrier).decode() if carrier else None


async def handle_job(deps: WorkerDeps, job: WebhookJob, source: str) -> None:
    """First sight of an event: open its delivery and make attempt 1 (replays do nothing)."""
    delivery = store.Delivery(
        event_id=job.event_id,
        subscription_id=job.subscription_id,
        tenant_id=job.tenant_id,
        event_type=job.event_type.value,
        payload=job.body,
        trace_context=_current_context(),
        source=source,
        attempts=0,
    )
    async with deps.engine.begin() as conn:
        state = await store.open_delivery(conn, delivery, deps.clock())
    if state.status != store.PENDING or state.attempts > 0:
        log.info("webhook_job_replayed", webhook_id=job.event_id, status=state.status)
        return
    await attempt_and_record(deps, delivery, 1)


def next_delay(
    settings: WorkerSettings, failed_attempt: int, retry_after: float | None
) -> float | None:
    """Seconds until the next attempt after `failed_attempt` failed; None when none is left."""
    delays = settings.retry_delays
    if failed_attempt > len(delays):
        return None
    jitter = settings.retry_jitter
    delay = delays[failed_attempt - 1] * random.uniform(1 - jitter, 1 + jitter)  # noqa: S311
    if retry_after is not None:
        delay = max(delay, min(retry_after, settings.max_retry_after_seconds))
    return delay


async def attempt_and_record(deps: WorkerDeps, delivery: store.Delivery, attempt: int) -> None:
    async with deps.engine.begin() as conn:
        target = await store.target_for(conn, deps.box, delivery.subscription_id, deps.clock())
    if isinstance(target, str):
        async with deps.engine.begin() as conn:
            await store.set_state(
                conn, delivery.event_id, store.FAILED, attempt - 1, deps.clock(), error=target
            )
        log.warning("webhook_skipped", webhook_id=delivery.event_id, reason=target)
        return
    result = await attempt_delivery(
        deps.session,
        deps.tracer,
        target,
        delivery.event_id,
        delivery.payload.encode(),
        deps.settings.delivery_timeout_seconds,
    )
    now = deps.clock()
    async with deps.engine.begin() as conn:
        status, delay = await _settle(deps, conn, delivery, attempt, result, now)
    deps.metrics.attempt(
        delivery.event_type,
        SUCCESS if result.outcome is Outcome.SUCCESS else FAILED,
        result.seconds,
    )
    if status == store.DEAD_LETTERED:
        deps.metrics.dead_lettered(delivery.event_type)
    _log_attempt(delivery, attempt, result, status, delay, target.url)


async def _settle(
    deps: WorkerDeps,
    conn: Any,
    delivery: store.Delivery,
    attempt: int,
    result: AttemptResult,
    now: datetime,
) -> tuple[str, float | None]:
    """Write the attempt and the new state in one transaction; returns (status, retry delay)."""
    delay: float | None = None
    if result.outcome is Outcome.SUCCESS:
        status = store.SUCCEEDED
    elif result.outcome is Outcome.GONE:
        status = store.FAILED
        await store.disable_subscription(
            conn, delivery.subscription_id, "410 Gone from the receiver", now
        )
    else:
        delay = next_delay(deps.settings, attempt, result.retry_after)
        status = store.RETRYING if delay is not None else store.DEAD_LETTERED
    if not await store.record_attempt(conn, delivery, attempt, result, status, now):
        return status, delay  # this attempt was already recorded by an earlier run
    next_at = now + timedelta(seconds=delay) if delay is not None else None
    await store.set_state(
        conn, delivery.event_id, status, attempt, now, result=result, next_attempt_at=next_at
    )
    if status == store.DEAD_LETTERED:
        await _dead_letter(deps, delivery, attempt, result)
    return status, delay


async def _dead_letter(
    deps: WorkerDeps, delivery: store.Delivery, attempts: int, result: AttemptResult
) -> None:
    body = orjson.loads(delivery.payload)
    job = WebhookJob(
        event_id=delivery.event_id,
        event_type=EventType(delivery.event_type),
        tenant_id=delivery.tenant_id,
        subscription_id=delivery.subscription_id,
        occurred_at=datetime.fromisoformat(body.get("timestamp", utc_now().isoformat())),
        body=delivery.payload,
    )
    await deps.dead_letters.publish(
        job.encode(),
        delivery.subscription_id.encode(),
        parse_origin(delivery.source),
        result.error or "failed",
        attempts,
        extra=job.headers(),
    )


def _log_attempt(
    delivery: store.Delivery,
    attempt: int,
    result: AttemptResult,
    status: str,
    delay: float | None,
    url: str,
) -> None:
    fields = {
        "webhook_id": delivery.event_id,
        "event_type": delivery.event_type,
        "subscription_id": delivery.subscription_id,
        "tenant_id": delivery.tenant_id,
        "attempt": attempt,
        "status": SUCCESS if result.outcome is Outcome.SUCCESS else FAILED,
        "delivery_status": status,
        "status_code": result.status_code,
        "duration_ms": round(result.seconds * 1000, 2),
        "host": URL(url).host,
        "error": result.error,
        "retry_in_seconds": round(delay, 2) if delay is not None else None,
    }
    if result.outcome is Outcome.SUCCESS:
        log.info(names.EVENT_WEBHOOK_DELIVERY, **fields)
    else:
        log.warning(names.EVENT_WEBHOOK_DELIVERY, **fields)


async def run_due_retries(deps: WorkerDeps) -> int:
    """Attempt every retry that is due now; returns how many were attempted."""
    lease = timedelta(seconds=deps.settings.delivery_timeout_seconds * 2 + 5)
    async with deps.engine.begin() as conn:
        due = await store.claim_due(conn, deps.clock(), deps.settings.retry_batch_size, lease)
    for row in due:
        delivery = store.delivery_of(row)
        await _retry_in_trace(deps, delivery, row.attempts + 1)
    return len(due)


async def _retry_in_trace(deps: WorkerDeps, delivery: store.Delivery, attempt: int) -> None:
    """The retry continues the event's trace: a child of its first processing span."""
    carrier = orjson.loads(delivery.trace_context) if delivery.trace_context else {}
    token = otel_context.attach(propagate.extract(carrier))
    try:
        with deps.tracer.start_as_current_span(
            "process webhook retry",
            kind=SpanKind.CONSUMER,
            attributes={
                "mandate_vault.webhook_id": delivery.event_id,
                "mandate_vault.attempt": attempt,
            },
        ):
            await attempt_and_record(deps, delivery, attempt)
    finally:
        otel_context.detach(token)
