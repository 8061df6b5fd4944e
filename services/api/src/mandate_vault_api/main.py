"""api: tenants, users and login, mandates, webhook subscriptions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

from fastapi import FastAPI

from mandate_vault_api.settings import ApiSettings
from mandate_vault_shared.serve import package_version
from mandate_vault_shared.telemetry import Telemetry, configure_telemetry, get_logger
from mandate_vault_shared.web.app import build_app

SERVICE_NAME: Final = "mandate-vault-api"
DISTRIBUTION: Final = "mandate-vault-api"

log = get_logger(__name__)


def create_app(settings: ApiSettings | None = None, telemetry: Telemetry | None = None) -> FastAPI:
    settings = settings or ApiSettings()
    telemetry = telemetry or configure_telemetry(
        SERVICE_NAME, package_version(DISTRIBUTION), settings
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        log.info("service_started", port=settings.port, environment=settings.environment.value)
        yield
        log.info("service_stopped")

    return build_app(
        title="Mandate Vault API",
        description="Submit, verify, store and revoke payment mandates; manage webhooks.",
        telemetry=telemetry,
        lifespan=lifespan,
        readiness={},
    )
