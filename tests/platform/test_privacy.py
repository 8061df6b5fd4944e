"""Canary secrets sent through every input channel reach no log line, span or Sentry envelope."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from mandate_vault_harness.otlp import OtlpReceiver
from mandate_vault_harness.sentry import SentrySink
from mandate_vault_harness.services import ServiceProcess

CANARY_JWT = "eyJhbGciOiJFUzI1NiJ9.eyJjYW5hcnkiOiJqd3QifQ.Y2FuYXJ5LXNpZ25hdHVyZQ"
CANARY_API_KEY = "mvk_canaryApiKey1234567890"
CANARY_WEBHOOK_SECRET = "whsec_Y2FuYXJ5V2ViaG9va1NlY3JldDEyMzQ1Ng"
CANARY_REFRESH = "mvr_canaryRefreshToken0987654321"
CANARY_PASSWORD = "hunter2-canary-password"
CANARIES = (CANARY_JWT, CANARY_API_KEY, CANARY_WEBHOOK_SECRET, CANARY_REFRESH, CANARY_PASSWORD)


@pytest.mark.parametrize("pipeline", ["fast", "sdk"])
def test_canaries_never_leave_the_process(
    otlp: OtlpReceiver,
    sentry_sink: SentrySink,
    canary_service: Callable[..., ServiceProcess],
    pipeline: str,
) -> None:
    process = canary_service(
        {
            "TELEMETRY_PIPELINE": pipeline,
            "SENTRY_DSN": sentry_sink.dsn,
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "OTEL_BLRP_SCHEDULE_DELAY": "100",
            "LOG_LEVEL": "DEBUG",
        },
    ).start()
    headers = {
        "Authorization": f"Bearer {CANARY_JWT}",
        "X-API-Key": CANARY_API_KEY,
        "Cookie": f"session={CANARY_REFRESH}",
        "X-Webhook-Secret": CANARY_WEBHOOK_SECRET,
    }
    try:
        # body fields + a log field (the handler logs `note` and `password`)
        httpx.post(
            f"{process.url}/echo",
            headers=headers,
            json={
                "note": f"see {CANARY_WEBHOOK_SECRET} and {CANARY_JWT}",
                "password": CANARY_PASSWORD,
            },
        )
        # query string + exception message (the handler raises with the token in its text)
        boom = httpx.get(
            f"{process.url}/boom",
            params={"token": CANARY_API_KEY, "refresh": CANARY_REFRESH},
            headers=headers,
        )
        # body field that ends up in an exception message
        httpx.post(f"{process.url}/boom", headers=headers, json={"vc_jwt": CANARY_JWT})
        assert boom.status_code == 500
        sentry_sink.wait_for("RuntimeError")
        sentry_sink.wait_for("ValueError")
        otlp.wait_for(lambda r: any(log.body == "canary_echo" for log in r.logs))
        otlp.wait_for(lambda r: sum(s.name.endswith("/boom") for s in r.spans) >= 2)
    finally:
        process.stop()

    envelopes = sentry_sink.text()
    logs = process.output()
    exported = b"".join(body for _, body in otlp.raw).decode("utf-8", "replace")
    for canary in CANARIES:
        assert canary not in envelopes, f"{canary} reached Sentry"
        assert canary not in logs, f"{canary} reached a log line"
        assert canary not in exported, f"{canary} reached the collector"
    # The events still arrived, with the scrubbed exception text and the W3C trace id.
    assert "upstream refused credential [REDACTED]" in envelopes
    assert "trace_id" in envelopes
    assert "[REDACTED]" in logs
