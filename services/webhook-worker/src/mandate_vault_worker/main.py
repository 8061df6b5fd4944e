"""webhook-worker: consumes webhook jobs from Kafka beside a small HTTP server for probes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Final, TypedDict

from aiokafka import AIOKafkaProducer
from fastapi import FastAPI, Request
from sqlalchemy import text

from mandate_vault_shared.db.engine import create_engine
from mandate_vault_shared.kafka import producer_options
from mandate_vault_shared.serve import package_version
from mandate_vault_shared.ssrf import guarded_session
from mandate_vault_shared.telemetry import Telemetry, configure_telemetry, get_logger
from mandate_vault_shared.web.app import build_app
from mandate_vault_shared.webhooks import SecretBox
from mandate_vault_worker.consumer import JobConsumer
from mandate_vault_worker.dead_letter import DeadLetters
from mandate_vault_worker.handlers import WorkerDeps, handle_job, run_due_retries
from mandate_vault_worker.metrics import WorkerMetrics
from mandate_vault_worker.settings import WorkerSettings

SERVICE_NAME: Final = "mandate-vault-webhook-worker"
DISTRIBUTION: Final = "mandate-vault-webhook-worker"

log = get_logger(__name__)


class WorkerState(TypedDict):
    consumer: JobConsumer
    deps: WorkerDeps


async def _consumer_ready(request: Request) -> str | None:
    consumer: JobConsumer = request.scope["state"]["consumer"]
    return None if consumer.connected else "not connected to Kafka"


async def _database_ready(request: Request) -> str | None:
    deps: WorkerDeps = request.scope["state"]["deps"]
    async with deps.engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
    return None


def _repeat(
    seconds: float, job: Callable[[], Awaitable[object]], name: str
) -> Callable[[], Coroutine[None, None, None]]:
    async def loop() -> None:
        while True:
            try:
                await job()
            except Exception as exc:  # keep the loop alive; the next round retries
                log.warning("background_job_failed", job=name, error_type=type(exc).__name__)
            await asyncio.sleep(seconds)

    return loop


def create_app(
    settings: WorkerSettings | None = None, telemetry: Telemetry | None = None
) -> FastAPI:
    settings = settings or WorkerSettings()
    telemetry = telemetry or configure_telemetry(
        SERVICE_NAME, package_version(DISTRIBUTION), settings
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[WorkerState]:
        engine = create_engine(
            settings.database_url, metrics=telemetry.fast, pool_size=settings.db_pool_size
        )
        session = guarded_session(settings.ssrf_policy, settings.delivery_timeout_seconds)
        dead_letters = DeadLetters(
            lambda: AIOKafkaProducer(**producer_options(settings.kafka)),
            telemetry.tracer,
            settings.dead_letter_topic,
        )
        metrics = WorkerMetrics(telemetry.meter)
        deps = WorkerDeps(
            settings,
            engine,
            session,
            SecretBox(settings.encryption_key),
            telemetry.tracer,
            dead_letters,
            metrics,
        )
        consumer = JobConsumer(
            settings,
            telemetry.tracer,
            lambda job, source: handle_job(deps, job, source),
            dead_letters,
        )
        jobs: dict[str, Coroutine[None, None, None]] = {
            "consumer": consumer.run(),
            "retries": _repeat(
                settings.retry_poll_interval_seconds, lambda: run_due_retries(deps), "retries"
            )(),
            "lag": _repeat(
                settings.lag_interval_seconds, lambda: consumer.measure_lag(metrics.lag), "lag"
            )(),
        }
        tasks = [asyncio.create_task(job, name=name) for name, job in jobs.items()]
        log.info("service_started", port=settings.port, environment=settings.environment.value)
        try:
            yield WorkerState(consumer=consumer, deps=deps)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await dead_letters.close()
            await session.close()
            await engine.dispose()
            log.info("service_stopped")

    return build_app(
        title="Mandate Vault webhook worker",
        description="Delivers signed webhooks from Kafka jobs; this server only answers probes.",
        telemetry=telemetry,
        lifespan=lifespan,
        readiness={"kafka": _consumer_ready, "database": _database_ready},
    )
