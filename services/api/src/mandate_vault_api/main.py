"""api: tenants, users and login, mandates, webhook subscriptions."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Final

from fastapi import FastAPI, Request
from sqlalchemy import text

from mandate_vault_api.auth import AuthPolicy
from mandate_vault_api.background import (
    LeaderElection,
    every,
    report_gauges_forever,
    sweep_expired,
)
from mandate_vault_api.clock import Clock, utc_now
from mandate_vault_api.database import DATABASE_DOWN_ERRORS, Database
from mandate_vault_api.deps import ApiState
from mandate_vault_api.metrics import ApiMetrics
from mandate_vault_api.routes import api_keys, auth, issuers, mandates, tenants, users
from mandate_vault_api.settings import ApiSettings
from mandate_vault_api.verifier_client import VerifierClient, create_session
from mandate_vault_shared.db.engine import create_engine
from mandate_vault_shared.serve import package_version
from mandate_vault_shared.telemetry import Telemetry, configure_telemetry, get_logger
from mandate_vault_shared.web.app import build_app

SERVICE_NAME: Final = "mandate-vault-api"
DISTRIBUTION: Final = "mandate-vault-api"
MAX_BODY_BYTES: Final = 64 * 1024
TAGS: Final = [
    {"name": "auth", "description": "Login, token refresh and logout."},
    {"name": "mandates", "description": "Submit, list, read, revoke and re-verify mandates."},
    {"name": "trusted issuers", "description": "Issuers whose mandates a tenant accepts."},
    {"name": "users", "description": "A tenant's users and roles."},
    {"name": "api keys", "description": "Keys for machine clients (X-API-Key)."},
    {"name": "tenants", "description": "Tenants (admins)."},
]

log = get_logger(__name__)


def auth_policy(settings: ApiSettings) -> AuthPolicy:
    return AuthPolicy(
        signing_key=settings.signing_key,
        access_ttl=timedelta(seconds=settings.access_token_ttl_seconds),
        refresh_ttl=timedelta(seconds=settings.refresh_token_ttl_seconds),
        threshold=settings.lockout_threshold,
        window=timedelta(seconds=settings.lockout_window_seconds),
        lock_duration=timedelta(seconds=settings.lockout_duration_seconds),
    )


async def _database_ready(request: Request) -> str | None:
    db: Database = request.scope["state"]["db"]
    async with db.engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
    return None


def create_app(
    settings: ApiSettings | None = None,
    telemetry: Telemetry | None = None,
    clock: Clock = utc_now,
) -> FastAPI:
    settings = settings or ApiSettings()
    telemetry = telemetry or configure_telemetry(
        SERVICE_NAME, package_version(DISTRIBUTION), settings
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[ApiState]:
        engine = create_engine(
            settings.database_url,
            meter=telemetry.meter,
            pool_size=settings.db_pool_size,
            pool_timeout=settings.db_pool_timeout_seconds,
        )
        db = Database(engine)
        session = create_session(settings.verifier_timeout_seconds)
        metrics = ApiMetrics(telemetry.meter)
        election = LeaderElection(db)
        tasks = [
            asyncio.create_task(election.run(), name="leader-election"),
            asyncio.create_task(
                every(
                    settings.expiry_sweep_interval_seconds,
                    election,
                    lambda: sweep_expired(db, clock),
                    "expiry_sweep",
                )(),
                name="expiry-sweep",
            ),
            asyncio.create_task(
                report_gauges_forever(
                    db, metrics.snapshot, clock, election, settings.gauge_refresh_interval_seconds
                ),
                name="gauges",
            ),
        ]
        log.info("service_started", port=settings.port, environment=settings.environment.value)
        try:
            yield ApiState(
                settings=settings,
                db=db,
                verifier=VerifierClient(settings.verifier_url, session, telemetry.tracer),
                metrics=metrics,
                clock=clock,
                auth_policy=auth_policy(settings),
            )
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await election.close()
            await session.close()
            await engine.dispose()
            log.info("service_stopped")

    app = build_app(
        title="Mandate Vault API",
        description=(
            "Submit payment mandates (JWT Verifiable Credentials), have them verified against "
            "trusted issuers, store them and manage who may see them. Authenticate with a "
            "bearer token from `/api/v1/auth/login` or an `X-API-Key`."
        ),
        telemetry=telemetry,
        lifespan=lifespan,
        readiness={"database": _database_ready},
        openapi_tags=TAGS,
        dependency_errors=DATABASE_DOWN_ERRORS,
        max_body_size=MAX_BODY_BYTES,
    )
    for module in (auth, mandates, issuers, users, api_keys, tenants):
        app.include_router(module.router)
    return app
