"""Each service starts as a real process and answers health, readiness and metrics."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from mandate_vault_harness.broker import Broker
from mandate_vault_harness.metrics import scrape, value
from mandate_vault_harness.services import ServiceProcess

SERVICE_NAMES = {
    "api": "mandate-vault-api",
    "jwt-verifier": "mandate-vault-jwt-verifier",
    "webhook-worker": "mandate-vault-webhook-worker",
}


def service_env(service: str, broker: Broker, topic: str, database: str) -> dict[str, str]:
    if service == "webhook-worker":
        return {
            "WORKER_KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap,
            "WORKER_JOBS_TOPIC": topic,
            "WORKER_CONSUMER_GROUP": f"group-{topic}",
            "WORKER_DATABASE_URL": database,
        }
    if service == "api":
        return {"API_DATABASE_URL": database, "API_KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap}
    return {}


def wait_ready(url: str, timeout: float = 20.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    response = httpx.get(f"{url}/readyz")
    while response.status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
        response = httpx.get(f"{url}/readyz")
    return response


def assert_errors_documented_as_served(document: dict[str, Any]) -> None:
    """Every error response the document lists has the body the shared handler renders."""
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    assert set(schemas["ErrorBody"]["required"]) == {"error", "detail", "request_id"}
    errors = [
        response
        for operations in document["paths"].values()
        for operation in operations.values()
        for code, response in operation["responses"].items()
        if int(code) >= 400
    ]
    for response in errors:
        schema = response["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/ErrorBody"}


@pytest.mark.parametrize("service", list(SERVICE_NAMES))
def test_service_answers_health_readiness_and_metrics(
    service: str, broker: Broker, topic: str, sqlite_url: str
) -> None:
    process = ServiceProcess(service, service_env(service, broker, topic, sqlite_url)).start()
    try:
        health = httpx.get(f"{process.url}/healthz")
        assert health.status_code == 200
        assert health.json() == {"status": "ok", "service": SERVICE_NAMES[service]}

        ready = wait_ready(process.url)
        assert ready.status_code == 200, ready.text
        assert ready.json()["status"] == "ready"

        metrics = httpx.get(f"{process.url}/api/v1/metrics")
        assert metrics.headers["content-type"].startswith("text/plain")
        samples = scrape(process.url)
        info = value(
            samples,
            "mandate_vault_app_info",
            service=SERVICE_NAMES[service],
            environment="development",
            version="0.1.0",
        )
        assert info == 1.0
        assert_errors_documented_as_served(httpx.get(f"{process.url}/openapi.json").json())
    finally:
        # uvicorn re-raises SIGTERM after a graceful shutdown, hence -15 rather than 0.
        assert process.stop() in (0, -15), process.output()
        assert "service_stopped" in process.output()


def test_worker_readiness_reports_a_missing_broker(topic: str, sqlite_url: str) -> None:
    process = ServiceProcess(
        "webhook-worker",
        {
            "WORKER_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:1",
            "WORKER_JOBS_TOPIC": topic,
            "WORKER_DATABASE_URL": sqlite_url,
        },
    ).start()
    try:
        assert httpx.get(f"{process.url}/healthz").status_code == 200
        ready = httpx.get(f"{process.url}/readyz")
        assert ready.status_code == 503
        assert ready.json() == {
            "status": "not_ready",
            "checks": {"kafka": "not connected to Kafka", "database": "ok"},
        }
    finally:
        process.stop()


def test_bad_settings_fail_at_start_with_a_clear_message() -> None:
    process = ServiceProcess("api", {"API_PORT": "not-a-port", "LOG_FORMAT": "xml"})
    process.start(wait=False)
    deadline = time.monotonic() + 20
    while process.running and time.monotonic() < deadline:
        time.sleep(0.1)
    assert process.stop() == 2
    assert process.output().splitlines() == [
        "invalid setting API_PORT: Input should be a valid integer, unable to parse string as an "
        "integer",
        "invalid setting LOG_FORMAT: Input should be 'json' or 'text'",
    ]
