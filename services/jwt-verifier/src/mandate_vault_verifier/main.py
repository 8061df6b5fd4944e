"""jwt-verifier: verifies mandate JWTs against trusted issuers' keys."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

from fastapi import FastAPI

from mandate_vault_shared.serve import package_version
from mandate_vault_shared.telemetry import Telemetry, configure_telemetry, get_logger
from mandate_vault_shared.web.app import build_app
from mandate_vault_verifier.settings import VerifierSettings

SERVICE_NAME: Final = "mandate-vault-jwt-verifier"
DISTRIBUTION: Final = "mandate-vault-jwt-verifier"

log = get_logger(__name__)


def create_app(
    settings: VerifierSettings | None = None, telemetry: Telemetry | None = None
) -> FastAPI:
    settings = settings or VerifierSettings()
    telemetry = telemetry or configure_telemetry(
        SERVICE_NAME, package_version(DISTRIBUTION), settings
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        log.info("service_started", port=settings.port, environment=settings.environment.value)
        yield
        log.info("service_stopped")

    return build_app(
        title="Mandate Vault JWT verifier",
        description="Verifies mandate JWT Verifiable Credentials against trusted issuers.",
        telemetry=telemetry,
        lifespan=lifespan,
        readiness={},
    )
