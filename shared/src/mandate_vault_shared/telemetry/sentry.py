"""Sentry error tracking: on when SENTRY_DSN is set, scrubbed by key and by value.

Sentry's own scrubber matches key names only; a JWT quoted in an exception message would pass
straight through it. Every event, transaction, breadcrumb and log therefore also goes through
`redact`, which removes secret-*shaped* values anywhere in the payload. Sentry never adds its
own propagation headers (`trace_propagation_targets=[]`): W3C `traceparent` stays the only
trace context on the wire, and `OTLPIntegration` ties Sentry events to OpenTelemetry trace ids.
"""

from __future__ import annotations

from typing import Any

import sentry_sdk
from sentry_sdk.integrations.otlp import OTLPIntegration
from sentry_sdk.scrubber import DEFAULT_DENYLIST, DEFAULT_PII_DENYLIST, EventScrubber

from mandate_vault_shared.telemetry.redact import redact

_EXTRA_DENYLIST = [
    "vc_jwt",
    "jwt",
    "refresh_token",
    "access_token",
    "x-api-key",
    "x_api_key",
    "api_key",
    "secret",
    "whsec",
    "client_secret",
    "private_key",
]


def _scrub(event: Any, _hint: Any) -> Any:
    return redact(event)


def _scrub_breadcrumb(crumb: Any, _hint: Any) -> Any:
    return redact(crumb)


def init_sentry(
    *,
    dsn: str,
    environment: str,
    release: str,
    traces_sample_rate: float,
    server_name: str,
) -> None:
    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        release=release,
        server_name=server_name,
        traces_sample_rate=traces_sample_rate,
        send_default_pii=False,
        max_request_body_size="never",
        include_local_variables=False,
        trace_propagation_targets=[],
        event_scrubber=EventScrubber(
            denylist=DEFAULT_DENYLIST + _EXTRA_DENYLIST,
            pii_denylist=DEFAULT_PII_DENYLIST,
            recursive=True,
        ),
        before_send=_scrub,
        before_send_transaction=_scrub,
        before_breadcrumb=_scrub_breadcrumb,
        before_send_log=_scrub,
        integrations=[OTLPIntegration(setup_otlp_traces_exporter=False, setup_propagator=False)],
    )


def set_identity(*, user_id: str | None, tenant_id: str | None) -> None:
    """User and tenant context for the current request's events (ids only, no PII)."""
    if not sentry_sdk.get_client().is_active():
        return
    if user_id is not None:
        sentry_sdk.set_user({"id": user_id})
    if tenant_id is not None:
        sentry_sdk.set_tag("tenant_id", tenant_id)


def capture_exception(exc: BaseException) -> None:
    if sentry_sdk.get_client().is_active():
        sentry_sdk.capture_exception(exc)


def flush_sentry(timeout: float = 2.0) -> None:
    client = sentry_sdk.get_client()
    if client.is_active():
        client.flush(timeout=timeout)
