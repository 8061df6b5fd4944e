"""jwt-verifier: verifies mandate JWTs against trusted issuers' keys."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

from fastapi import FastAPI, Request

from mandate_vault_shared.settings import Environment
from mandate_vault_shared.ssrf import guarded_session
from mandate_vault_shared.telemetry import Telemetry, get_logger
from mandate_vault_shared.web.admission import DEFAULT_BUDGET, AdmissionControl
from mandate_vault_shared.web.app import build_app
from mandate_vault_shared.web.middleware import QUIET_PATHS
from mandate_vault_verifier.deps import State, VerifierContext
from mandate_vault_verifier.metrics import VerificationRecorder
from mandate_vault_verifier.resolver import DidWebResolver
from mandate_vault_verifier.routes import verify
from mandate_vault_verifier.settings import VerifierSettings
from mandate_vault_verifier.truststore import Truststore, TruststoreError, load_truststore
from mandate_vault_verifier.verifier import Verifier

SERVICE_NAME: Final = "mandate-vault-jwt-verifier"
DISTRIBUTION: Final = "mandate-vault-jwt-verifier"

log = get_logger(__name__)


def did_web_ssl_context(settings: VerifierSettings) -> ssl.SSLContext | None:
    """The system CAs, or only the CA file of ``VERIFIER_DID_WEB_CA_FILE`` when set."""
    if settings.did_web_ca_file is None:
        return None
    return ssl.create_default_context(cafile=str(settings.did_web_ca_file))


def _log_truststore(truststore: Truststore, settings: VerifierSettings) -> None:
    log.info(
        "truststore_loaded",
        issuers=len(truststore.issuers),
        did_web_issuers=sum(1 for i in truststore.issuers.values() if i.resolvable),
        static_keys=truststore.static_key_count,
    )
    if settings.ssrf_allowlist and settings.environment is not Environment.DEVELOPMENT:
        log.warning("ssrf_allowlist_in_use", entries=settings.ssrf_allowlist)


def create_app(settings: VerifierSettings, telemetry: Telemetry) -> FastAPI:

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[State]:
        try:
            truststore = load_truststore(settings.truststore_path, settings.truststore_json)
        except TruststoreError as exc:
            log.error("truststore_invalid", detail=str(exc))
            raise
        _log_truststore(truststore, settings)
        session = guarded_session(
            settings.ssrf_policy,
            settings.did_web_timeout_seconds,
            ssl_context=did_web_ssl_context(settings),
        )
        resolver = DidWebResolver(
            session,
            telemetry.http_client,
            max_bytes=settings.did_web_max_bytes,
            ttl_seconds=settings.did_web_cache_ttl_seconds,
            failure_ttl_seconds=settings.did_web_failure_ttl_seconds,
        )
        verifier = Verifier(
            truststore,
            resolver,
            leeway_seconds=settings.leeway_seconds,
            max_token_bytes=settings.max_token_bytes,
        )
        log.info("service_started", port=settings.port, environment=settings.environment.value)
        try:
            yield State(
                context=VerifierContext(
                    verifier=verifier,
                    recorder=VerificationRecorder(telemetry.metrics),
                    max_request_bytes=settings.max_request_bytes,
                )
            )
        finally:
            await resolver.aclose()
            await session.close()
            log.info("service_stopped")

    app = build_app(
        title="Mandate Vault JWT verifier",
        description="Verifies mandate JWT Verifiable Credentials against trusted issuers.",
        telemetry=telemetry,
        lifespan=lifespan,
        readiness={"truststore": truststore_ready},
        openapi_tags=[{"name": "verify", "description": "Mandate JWT verification"}],
        admission=AdmissionControl(
            SERVICE_NAME,
            {DEFAULT_BUDGET: settings.admission},
            telemetry.metrics,
            exempt=QUIET_PATHS,
        ),
    )
    app.include_router(verify.router)
    return app


async def truststore_ready(request: Request) -> str | None:
    context = getattr(request.state, "context", None)
    if not isinstance(context, VerifierContext) or not isinstance(context.verifier, Verifier):
        return "truststore not loaded"
    return None
