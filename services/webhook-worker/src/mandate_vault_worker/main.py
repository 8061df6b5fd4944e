"""webhook-worker: consumes webhook jobs from Kafka beside a small HTTP server for probes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final, TypedDict

from fastapi import FastAPI, Request

from mandate_vault_shared.serve import package_version
from mandate_vault_shared.telemetry import Telemetry, configure_telemetry, get_logger
from mandate_vault_shared.web.app import build_app
from mandate_vault_worker.consumer import JobConsumer
from mandate_vault_worker.handlers import handle_job
from mandate_vault_worker.settings import WorkerSettings

SERVICE_NAME: Final = "mandate-vault-webhook-worker"
DISTRIBUTION: Final = "mandate-vault-webhook-worker"

log = get_logger(__name__)


class WorkerState(TypedDict):
    consumer: JobConsumer


async def _consumer_ready(request: Request) -> str | None:
    consumer: JobConsumer = request.state.consumer
    return None if consumer.connected else "not connected to Kafka"


def create_app(
    settings: WorkerSettings | None = None, telemetry: Telemetry | None = None
) -> FastAPI:
    settings = settings or WorkerSettings()
    telemetry = telemetry or configure_telemetry(
        SERVICE_NAME, package_version(DISTRIBUTION), settings
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[WorkerState]:
        consumer = JobConsumer(settings, telemetry.tracer, handle_job)
        task = asyncio.create_task(consumer.run(), name="webhook-consumer")
        log.info("service_started", port=settings.port, environment=settings.environment.value)
        yield WorkerState(consumer=consumer)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        log.info("service_stopped")

    return build_app(
        title="Mandate Vault webhook worker",
        description="Delivers signed webhooks from Kafka jobs; this server only answers probes.",
        telemetry=telemetry,
        lifespan=lifespan,
        readiness={"kafka": _consumer_ready},
    )
