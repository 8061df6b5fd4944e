"""What the worker does with one job: plain async functions, safe to run twice.

`deliver` makes one attempt (its subscription's lane has admitted it) and records it; `park`
schedules a job its lane did not admit. Both end in one write through the `DeliveryWriter`.
Retries live in the delivery table rather than in retry topics because the schedule spans
seconds to hours: a due time per row needs no topic per delay tier, never blocks a partition,
survives restarts, and any worker can pick it up.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, TypeVar

import aiohttp
import orjson
from opentelemetry import propagate
from opentelemetry.trace import Tracer
from sqlalchemy.ext.asyncio import AsyncEngine
from yarl import URL

from mandate_vault_shared.messages import EventType, WebhookJob
from mandate_vault_shared.telemetry import get_logger, names
from mandate_vault_shared.telemetry.semconv import HttpClientTelemetry, MessagingTelemetry
from mandate_vault_worker import store
from mandate_vault_worker.dead_letter import DeadLetters, parse_origin
from mandate_vault_worker.delivery import AttemptResult, Outcome, Target, attempt_delivery
from mandate_vault_worker.lanes import Admission, Lane, Lanes
from mandate_vault_worker.metrics import FAILED, SUCCESS, WorkerMetrics
from mandate_vault_worker.pg_fast import PgFastPath
from mandate_vault_worker.settings import WorkerSettings
from mandate_vault_worker.store import Delivery, StateWrite, WriteKind
from mandate_vault_worker.targets import TargetCache
from mandate_vault_worker.writer import DeliveryWriter

_BACKOFF_FIRST: Final = 0.5
_BACKOFF_MAX: Final = 30.0

log = get_logger(__name__)
Clock = Callable[[], datetime]
T = TypeVar("T")


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class WorkerDeps:
    settings: WorkerSettings
    engine: AsyncEngine
    session: aiohttp.ClientSession
    tracer: Tracer
    http: HttpClientTelemetry  # delivery requests: spans and http.client.request.duration
    messaging: MessagingTelemetry  # processing spans and messaging.* metrics
    dead_letters: DeadLetters
    metrics: WorkerMetrics
    writer: DeliveryWriter
    targets: TargetCache
    lanes: Lanes
    fast: PgFastPath | None = None  # PostgreSQL's hot statements without SQLAlchemy
    clock: Clock = utc_now


def current_context() -> str | None:
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return orjson.dumps(carrier).decode() if carrier else None


async def persist(step: Callable[[], Awaitable[T]], what: str, webhook_id: str) -> T:
    """Run `step` until it succeeds: the database or the broker may be away for a while, and a
    job is never dropped for that (it holds its offset and its window slot meanwhile)."""
    delay = _BACKOFF_FIRST
    while True:
        try:
            return await step()
        except Exception as exc:
            log.warning(
                "webhook_job_retrying",
                step=what,
                webhook_id=webhook_id,
                error_type=type(exc).__name__,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, _BACKOFF_MAX)


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


async def deliver(deps: WorkerDeps, delivery: Delivery, attempt: int, lane: Lane) -> None:
    """Attempt `attempt` of `delivery` (its lane slot is taken; this gives it back) and record
    the outcome."""
    target, result = await _send(deps, delivery, lane)
    if isinstance(target, str):
        await _skip(deps, delivery, attempt, target)
        return
    assert result is not None
    await _record(deps, delivery, attempt, result, target.url)


async def _send(
    deps: WorkerDeps, delivery: Delivery, lane: Lane
) -> tuple[Target | str, AttemptResult | None]:
    verdict: bool | None = None
    try:
        target = await persist(
            lambda: deps.targets.get(delivery.subscription_id), "subscription", delivery.event_id
        )
        if isinstance(target, str):
            return target, None
        result = await attempt_delivery(
            deps.session,
            deps.http,
            target,
            delivery.event_id,
            delivery.payload.encode(),
            deps.settings.delivery_timeout_seconds,
        )
        # A 410 switches the subscription off: it says nothing about the endpoint's health.
        verdict = None if result.outcome is Outcome.GONE else result.outcome is Outcome.SUCCESS
        return target, result
    finally:
        deps.lanes.release(lane, verdict)


def _outcome(
    settings: WorkerSettings, attempt: int, result: AttemptResult
) -> tuple[str, float | None]:
    """(the delivery's new status, seconds until its next attempt)."""
    if result.outcome is Outcome.SUCCESS:
        return store.SUCCEEDED, None
    if result.outcome is Outcome.GONE:
        return store.FAILED, None
    delay = next_delay(settings, attempt, result.retry_after)
    return (store.RETRYING, delay) if delay is not None else (store.DEAD_LETTERED, None)


async def _record(
    deps: WorkerDeps, delivery: Delivery, attempt: int, result: AttemptResult, url: str
) -> None:
    now = deps.clock()
    status, delay = _outcome(deps.settings, attempt, result)
    gone = result.outcome is Outcome.GONE
    write = StateWrite(
        WriteKind.ATTEMPT,
        delivery,
        status,
        attempt,
        now,
        next_attempt_at=now + timedelta(seconds=delay) if delay is not None else None,
        result=result,
        disable_reason="410 Gone from the receiver" if gone else None,
    )
    if status == store.DEAD_LETTERED:
        await persist(
            lambda: _dead_letter(deps, delivery, attempt, result), "dead_letter", delivery.event_id
        )
    await persist(lambda: deps.writer.write(write), "record", delivery.event_id)
    if gone:
        deps.targets.forget(delivery.subscription_id)
    deps.metrics.attempt(
        delivery.event_type,
        SUCCESS if result.outcome is Outcome.SUCCESS else FAILED,
        result.seconds,
    )
    if status == store.DEAD_LETTERED:
        deps.metrics.dead_lettered(delivery.event_type)
    _log_attempt(delivery, attempt, result, status, delay, url)


async def _skip(deps: WorkerDeps, delivery: Delivery, attempt: int, reason: str) -> None:
    write = StateWrite(
        WriteKind.CLOSE, delivery, store.FAILED, attempt - 1, deps.clock(), error=reason
    )
    await persist(lambda: deps.writer.write(write), "record", delivery.event_id)
    # Expected for a disabled subscription (its events are recorded, to be recovered later).
    log.info("webhook_skipped", webhook_id=delivery.event_id, reason=reason)


async def park(deps: WorkerDeps, delivery: Delivery, admission: Admission, lane: Lane) -> None:
    """Schedule a job its lane did not admit: due now behind a full window (the retry poller
    takes it when a slot frees), or when the open breaker lets a probe through."""
    wait = deps.lanes.reopens_in(lane) if admission is Admission.BREAKER_OPEN else 0.0
    lane.parked = True
    now = deps.clock()
    write = StateWrite(
        WriteKind.PARK,
        delivery,
        store.RETRYING,
        0,
        now,
        next_attempt_at=now + timedelta(seconds=wait),
        error=f"parked: {admission.value}",
    )
    await persist(lambda: deps.writer.write(write), "park", delivery.event_id)
    deps.metrics.parked(admission.value)
    log.info(
        names.EVENT_WEBHOOK_PARKED,
        webhook_id=delivery.event_id,
        subscription_id=delivery.subscription_id,
        tenant_id=delivery.tenant_id,
        reason=admission.value,
        due_in_seconds=round(wait, 2),
    )


async def _dead_letter(
    deps: WorkerDeps, delivery: Delivery, attempts: int, result: AttemptResult
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
    delivery: Delivery,
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
        "redelivery": delivery.redelivery,
    }
    if result.outcome is Outcome.SUCCESS:
        log.info(names.EVENT_WEBHOOK_DELIVERY, **fields)
    else:
        log.warning(names.EVENT_WEBHOOK_DELIVERY, **fields)
