"""api: tenants, users and login, mandates, webhook subscriptions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import timedelta
from typing import Final

from fastapi import FastAPI, Request
from sqlalchemy import text

from mandate_vault_api.auth import Authenticator, AuthPolicy
from mandate_vault_api.background import (
    LeaderElection,
    gauge_reporter,
    prune_outbox,
    sweep_expired,
)
from mandate_vault_api.cache import TtlCache
from mandate_vault_api.clock import Clock, utc_now
from mandate_vault_api.database import DATABASE_DOWN_ERRORS, Database
from mandate_vault_api.deps import AppContext, State, context_of
from mandate_vault_api.endpoint_health import disable_failing_endpoints
from mandate_vault_api.metrics import ApiMetrics
from mandate_vault_api.ratelimit import RateLimiter
from mandate_vault_api.reconcile import Reconciler
from mandate_vault_api.relay import OutboxRelay
from mandate_vault_api.revocation import Revocations
from mandate_vault_api.routes import (
    api_keys,
    auth,
    issuers,
    mandates,
    redelivery,
    tenants,
    users,
    webhooks,
)
from mandate_vault_api.settings import ApiSettings
from mandate_vault_api.shared_limits import RedisWindows
from mandate_vault_api.verifier_client import VerifierClient
from mandate_vault_shared.db.engine import create_engine
from mandate_vault_shared.keepalive import KeepAliveClient
from mandate_vault_shared.periodic import every
from mandate_vault_shared.producer import ManagedProducer
from mandate_vault_shared.telemetry import Telemetry, get_logger
from mandate_vault_shared.web.admission import DEFAULT_BUDGET, AdmissionControl, Route
from mandate_vault_shared.web.app import build_app
from mandate_vault_shared.web.middleware import QUIET_PATHS
from mandate_vault_shared.webhooks import SecretBox

SERVICE_NAME: Final = "mandate-vault-api"
DISTRIBUTION: Final = "mandate-vault-api"
MAX_BODY_BYTES: Final = 64 * 1024
LOGIN_BUDGET: Final = "login"
TAGS: Final = [
    {"name": "auth", "description": "Login, token refresh and logout."},
    {"name": "mandates", "description": "Submit, list, read, revoke and re-verify mandates."},
    {"name": "webhooks", "description": "Signed event deliveries to the tenant's systems."},
    {"name": "trusted issuers", "description": "Issuers whose mandates a tenant accepts."},
    {"name": "users", "description": "A tenant's users and roles."},
    {"name": "api keys", "description": "Keys for machine clients (X-API-Key)."},
    {"name": "tenants", "description": "Tenants (admins)."},
]

log = get_logger(__name__)


def auth_policy(settings: ApiSettings) -> AuthPolicy:
    return AuthPolicy(
        signing_keys=settings.signing_keys,
        access_ttl=timedelta(seconds=settings.access_token_ttl_seconds),
        refresh_ttl=timedelta(seconds=settings.refresh_token_ttl_seconds),
        threshold=settings.lockout_threshold,
        window=timedelta(seconds=settings.lockout_window_seconds),
        lock_duration=timedelta(seconds=settings.lockout_duration_seconds),
    )


async def _database_ready(request: Request) -> str | None:
    context = context_of(request)
    async with context.db.engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
    return None


async def _relay_progress(request: Request) -> str | None:
    context = context_of(request)
    stalled = context.relay.stalled_for()
    if stalled > context.settings.outbox_stall_seconds:
        return f"outbox relay stalled for {stalled:.0f}s (Kafka unreachable?)"
    return None


def _shared_limits(settings: ApiSettings) -> RedisWindows | None:
    """The Redis windows every replica shares, or None: limits stay per process."""
    if settings.redis_url is None:
        return None
    return RedisWindows(
        settings.redis_url.get_secret_value(),
        f"{settings.redis_key_prefix}:ratelimit",
        settings.redis_timeout_seconds,
        settings.rate_limits,
    )


async def _revocations_listening(request: Request) -> str | None:
    """Reported, never gating: while the channel is down the cache TTL bounds staleness."""
    context = context_of(request)
    if context.listener is not None and not context.listener.connected:
        return "not listening for revocations: caches expire after API_AUTH_CACHE_SECONDS"
    return None


async def _redis_reachable(request: Request) -> str | None:
    """Reported, never gating: the limiter falls back per process while Redis is away, so
    taking every replica out of the load balancer would turn a Redis outage into an outage."""
    context = context_of(request)
    if not await context.limiter.shared_store_ok():
        return "Redis unreachable: rate limits are per process until it is back"
    return None


def _background_tasks(
    settings: ApiSettings,
    db: Database,
    metrics: ApiMetrics,
    election: LeaderElection,
    relay: OutboxRelay,
    clock: Clock,
) -> list[asyncio.Task[None]]:
    retention = timedelta(days=settings.outbox_retention_days)
    failing_limit = timedelta(seconds=settings.webhook_disable_after_seconds)
    reconciler = Reconciler(
        db,
        relay,
        clock,
        metrics.events_reconciled,
        grace=timedelta(seconds=settings.outbox_reconcile_grace_seconds),
        lookback=timedelta(seconds=settings.outbox_reconcile_lookback_seconds),
        batch_size=settings.outbox_reconcile_batch_size,
    )

    def leading() -> bool:
        return election.is_leader

    async def housekeeping() -> None:
        await sweep_expired(db, clock, relay.wake)
        await disable_failing_endpoints(db, clock, failing_limit, metrics, relay.wake)
        await prune_outbox(db, clock, retention)

    jobs = {
        "leader-election": election.run(),
        "outbox-relay": relay.run(leading),
        "expiry-sweep": every(
            settings.expiry_sweep_interval_seconds, "housekeeping", housekeeping, when=leading
        ),
        "reconcile": every(
            settings.outbox_reconcile_interval_seconds,
            "reconcile",
            reconciler.run_pass,
            when=leading,
        ),
        "gauges": every(
            settings.gauge_refresh_interval_seconds,
            "gauges",
            gauge_reporter(db, metrics.snapshot, clock, election),
        ),
    }
    return [asyncio.create_task(job, name=name) for name, job in jobs.items()]


def _database(settings: ApiSettings, telemetry: Telemetry) -> Database:
    engine = create_engine(
        settings.database_url,
        telemetry=telemetry,
        pool_size=settings.db_pool_size,
        pool_timeout=settings.db_pool_timeout_seconds,
    )
    return Database(
        engine,
        telemetry.database(engine.dialect.name),
        hot_pool_size=settings.db_create_pool_size,
        pool_timeout=settings.db_pool_timeout_seconds,
        connections_in_use=telemetry.connections(),
    )


def _context(settings: ApiSettings, telemetry: Telemetry, clock: Clock) -> AppContext:
    """Every client the routes use, built once per process by the lifespan."""
    db = _database(settings, telemetry)
    relay = OutboxRelay(
        db,
        ManagedProducer.from_settings(settings.kafka),
        telemetry.messaging,
        settings.jobs_topic,
        clock,
        batch_size=settings.outbox_batch_size,
        poll_interval=settings.outbox_poll_interval_seconds,
    )
    policy = auth_policy(settings)
    revocations = Revocations(
        Authenticator(db, policy, clock, settings.auth_cache_seconds),
        TtlCache(settings.auth_cache_seconds),
    )
    return AppContext(
        settings=settings,
        db=db,
        verifier=VerifierClient(
            KeepAliveClient(settings.verifier_url),
            telemetry.http_client,
            settings.verifier_timeout_seconds,
        ),
        metrics=ApiMetrics(telemetry.metrics, telemetry.service),
        clock=clock,
        policy=policy,
        relay=relay,
        box=SecretBox(settings.encryption_key),
        authenticator=revocations.authenticator,
        issuer_cache=revocations.issuer_cache,
        limiter=RateLimiter(settings.rate_limits, telemetry.metrics, _shared_limits(settings)),
        revocations=revocations,
        listener=(
            revocations.listener(settings.database_url, telemetry.metrics)
            if db.dialect == "postgresql"
            else None
        ),
    )


async def _shut_down(
    context: AppContext, election: LeaderElection, tasks: list[asyncio.Task[None]]
) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await context.relay.close()
    await context.limiter.close()
    await election.close()
    await context.verifier.close()
    await context.db.close()


def _lifespan(
    settings: ApiSettings, telemetry: Telemetry, clock: Clock
) -> Callable[[FastAPI], AbstractAsyncContextManager[State]]:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[State]:
        context = _context(settings, telemetry, clock)
        election = LeaderElection(context.db)
        tasks = _background_tasks(
            settings, context.db, context.metrics, election, context.relay, clock
        )
        if context.listener is not None:
            tasks.append(asyncio.create_task(context.listener.run(), name="revocations"))
        log.info("service_started", port=settings.port, environment=settings.environment.value)
        try:
            yield State(context=context)
        finally:
            await _shut_down(context, election, tasks)
            log.info("service_stopped")

    return lifespan


def create_app(settings: ApiSettings, telemetry: Telemetry, clock: Clock = utc_now) -> FastAPI:
    app = build_app(
        title="Mandate Vault API",
        description=(
            "Submit payment mandates (JWT Verifiable Credentials), have them verified against "
            "trusted issuers, store them and manage who may see them. Authenticate with a "
            "bearer token from `/api/v1/auth/login` or an `X-API-Key`."
        ),
        telemetry=telemetry,
        lifespan=_lifespan(settings, telemetry, clock),
        readiness={"database": _database_ready},
        advisories={"outbox_relay": _relay_progress, "revocations": _revocations_listening}
        | ({"redis": _redis_reachable} if settings.redis_url is not None else {}),
        openapi_tags=TAGS,
        dependency_errors=DATABASE_DOWN_ERRORS,
        max_body_size=MAX_BODY_BYTES,
        admission=AdmissionControl(
            SERVICE_NAME,
            {DEFAULT_BUDGET: settings.admission, LOGIN_BUDGET: settings.login_admission},
            telemetry.metrics,
            routes=[Route("POST", "/api/v1/auth/login", LOGIN_BUDGET)],
            exempt=QUIET_PATHS,
        ),
    )
    for module in (auth, mandates, webhooks, redelivery, issuers, users, api_keys, tenants):
        app.include_router(module.router)
    return app
