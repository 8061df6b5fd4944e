"""webhook-worker: consumes webhook jobs from Kafka beside a small HTTP server for probes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

from fastapi import FastAPI, Request
from sqlalchemy import text

from mandate_vault_shared.db.engine import create_engine
from mandate_vault_shared.periodic import every
from mandate_vault_shared.producer import ManagedProducer
from mandate_vault_shared.ssrf import guarded_session
from mandate_vault_shared.telemetry import Telemetry, get_logger
from mandate_vault_shared.web.app import build_app
from mandate_vault_shared.webhooks import SecretBox
from mandate_vault_worker import store
from mandate_vault_worker.consumer import JobConsumer
from mandate_vault_worker.dead_letter import DeadLetters
from mandate_vault_worker.deps import State, WorkerContext, context_of
from mandate_vault_worker.dispatch import Dispatcher
from mandate_vault_worker.handlers import WorkerDeps, utc_now
from mandate_vault_worker.lanes import Lanes
from mandate_vault_worker.metrics import WorkerMetrics
from mandate_vault_worker.pg_fast import PgFastPath
from mandate_vault_worker.revocations import subscription_listener
from mandate_vault_worker.settings import WorkerSettings
from mandate_vault_worker.targets import TargetCache
from mandate_vault_worker.writer import DeliveryWriter

SERVICE_NAME: Final = "mandate-vault-webhook-worker"
DISTRIBUTION: Final = "mandate-vault-webhook-worker"
_WRITER_GRACE_SECONDS: Final = 5.0

log = get_logger(__name__)


async def _consumer_ready(request: Request) -> str | None:
    return None if context_of(request).consumer.connected else "not connected to Kafka"


async def _database_ready(request: Request) -> str | None:
    async with context_of(request).deps.engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
    return None


def _build_deps(settings: WorkerSettings, telemetry: Telemetry) -> WorkerDeps:
    engine = create_engine(
        settings.database_url, telemetry=telemetry, pool_size=settings.db_pool_size
    )
    # Every job in flight may hold a connection: the pool must not make one tenant's slow
    # endpoint queue another's requests.
    session = guarded_session(
        settings.ssrf_policy, settings.delivery_timeout_seconds, limit=settings.max_in_flight
    )
    dead_letters = DeadLetters(
        ManagedProducer.from_settings(settings.kafka),
        telemetry.messaging,
        settings.dead_letter_topic,
    )
    metrics = WorkerMetrics(telemetry.metrics, telemetry.service)
    box = SecretBox(settings.encryption_key)
    fast = (
        PgFastPath(engine, telemetry.database("postgresql"))
        if engine.dialect.name == "postgresql"
        else None
    )
    return WorkerDeps(
        settings=settings,
        engine=engine,
        session=session,
        tracer=telemetry.tracer,
        http=telemetry.http_client,
        messaging=telemetry.messaging,
        dead_letters=dead_letters,
        metrics=metrics,
        writer=DeliveryWriter(engine, fast),
        targets=TargetCache(engine, box, settings.subscription_cache_seconds, utc_now),
        lanes=Lanes(
            settings.subscription_window,
            settings.breaker_failure_threshold,
            settings.breaker_cooldown_seconds,
            metrics,
        ),
        fast=fast,
    )


async def _measure(consumer: JobConsumer, deps: WorkerDeps) -> None:
    """Consumer lag and the scheduled backlog of the delivery table, for the gauges."""
    await consumer.measure_lag(deps.metrics.lag)
    async with store.reading(deps.engine) as conn:
        deps.metrics.scheduled = await store.scheduled_count(conn)


async def _stop(
    consumer: JobConsumer,
    consuming: asyncio.Task[None],
    background: list[asyncio.Task[None]],
    grace_seconds: float,
) -> None:
    """No new retries, then the consumer drains and commits (bounded by the grace)."""
    for task in background:
        task.cancel()
    await asyncio.gather(*background, return_exceptions=True)
    consumer.stop()
    try:
        await asyncio.wait_for(consuming, grace_seconds + 10)
    except (TimeoutError, asyncio.CancelledError):
        log.warning("consumer_stop_timed_out")


def create_app(settings: WorkerSettings, telemetry: Telemetry) -> FastAPI:

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[State]:
        deps = _build_deps(settings, telemetry)
        dispatcher = Dispatcher(deps)
        consumer = JobConsumer(settings, dispatcher, deps.metrics.consumer_rebuilt)
        writer = asyncio.create_task(deps.writer.run(), name="writer")
        consuming = asyncio.create_task(consumer.run(), name="consumer")
        background = [
            asyncio.create_task(dispatcher.run_retries(), name="retries"),
            asyncio.create_task(
                every(settings.lag_interval_seconds, "lag", lambda: _measure(consumer, deps)),
                name="lag",
            ),
        ]
        # Subscription changes made through the api reach the target cache at commit.
        listener = subscription_listener(
            settings.database_url, deps.targets.forget, deps.targets.forget_all
        )
        if listener is not None:
            background.append(asyncio.create_task(listener.run(), name="revocations"))
        log.info("service_started", port=settings.port, environment=settings.environment.value)
        try:
            yield State(context=WorkerContext(consumer=consumer, deps=deps))
        finally:
            await _stop(consumer, consuming, background, settings.shutdown_grace_seconds)
            dispatcher.cancel()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(deps.writer.idle(), _WRITER_GRACE_SECONDS)
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
            await deps.dead_letters.close()
            await deps.session.close()
            await deps.engine.dispose()
            log.info("service_stopped")

    return build_app(
        title="Mandate Vault webhook worker",
        description="Delivers signed webhooks from Kafka jobs; this server only answers probes.",
        telemetry=telemetry,
        lifespan=lifespan,
        readiness={"kafka": _consumer_ready, "database": _database_ready},
    )
