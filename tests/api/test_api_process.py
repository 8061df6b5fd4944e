"""The api as a real process with a real verifier process: metrics, log events, trace hops."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.samples import Sample

from mandate_vault_harness.issuer import Issuer, truststore_json
from mandate_vault_harness.metrics import label_keys, scrape, value
from mandate_vault_harness.otlp import OtlpReceiver
from mandate_vault_harness.services import ServiceProcess, cli

TENANT = "acme-corp"
EMAIL = "ops@acme.example"
PASSWORD = "bootstrap-passphrase-1"


def otel(otlp: OtlpReceiver) -> dict[str, str]:
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"}


@pytest.fixture
def stack(
    database_url: str, bank: Issuer, otlp: OtlpReceiver
) -> Iterator[tuple[ServiceProcess, ServiceProcess]]:
    verifier = ServiceProcess(
        "jwt-verifier", {"VERIFIER_TRUSTSTORE_JSON": truststore_json(bank), **otel(otlp)}
    ).start()
    assert cli(database_url, "migrate").returncode == 0
    boot = cli(
        database_url,
        "bootstrap", "--tenant-id", TENANT, "--tenant-name", "Acme", "--admin-email", EMAIL,
        "--issuer", bank.did,
        env={"MV_BOOTSTRAP_PASSWORD": PASSWORD},
    )  # fmt: skip
    assert boot.returncode == 0, boot.stderr
    api = ServiceProcess(
        "api",
        {
            "API_DATABASE_URL": database_url,
            "API_VERIFIER_URL": verifier.url,
            "API_GAUGE_REFRESH_INTERVAL_SECONDS": "0.2",
            **otel(otlp),
        },
    ).start()
    yield api, verifier
    api.stop()
    verifier.stop()


def settled_scrape(url: str) -> list[Sample]:
    """A scrape taken while no background loop (gauge refresh every 0.2 s, outbox relay) holds a
    pooled connection: a leak keeps `db_connections_active` above 0 for good, a poll only briefly."""
    deadline = time.monotonic() + 5
    while True:
        time.sleep(0.3)  # at least one gauge refresh
        samples = scrape(url)
        if value(samples, "db_connections_active") == 0 or time.monotonic() > deadline:
            return samples


def login(api: ServiceProcess, password: str = PASSWORD) -> httpx.Response:
    return httpx.post(f"{api.url}/api/v1/auth/login", json={"email": EMAIL, "password": password})


def make_requests(api: ServiceProcess, verifier: ServiceProcess, bank: Issuer) -> list[Sample]:
    """A failed and a good login, a valid and a badly signed mandate, a read, then a create with
    the verifier stopped; the api's metrics once it settled."""
    assert login(api, "wrong-password").status_code == 401
    headers = {"Authorization": f"Bearer {login(api).json()['access_token']}"}
    with httpx.Client(base_url=api.url, headers=headers, timeout=10) as client:
        valid = client.post("/api/v1/mandates", json={"vc_jwt": bank.mandate()})
        invalid = client.post("/api/v1/mandates", json={"vc_jwt": bank.mandate()[:-4] + "AAAA"})
        assert (valid.status_code, invalid.status_code) == (201, 201)
        client.get(f"/api/v1/mandates/{valid.json()['id']}")
        verifier.stop()
        down = client.post("/api/v1/mandates", json={"vc_jwt": bank.mandate()})
        assert down.status_code == 503
        return settled_scrape(api.url)


def check_metrics(samples: list[Sample]) -> None:
    created = "mandates_created_total"
    assert value(samples, created, tenant_id=TENANT, verification_status="VALID") == 1
    assert value(samples, created, tenant_id=TENANT, verification_status="SIG_INVALID") == 1
    assert label_keys(samples, created) == {frozenset({"tenant_id", "verification_status"})}
    assert value(samples, "mandates_active", tenant_id=TENANT) == 1
    assert value(samples, "auth_attempts_total", result="failed") == 1
    assert value(samples, "auth_attempts_total", result="success") == 1
    assert value(samples, "active_users", tenant_id=TENANT, role="admin") == 1
    assert value(samples, "db_connections_active") == 0
    for operation in ("select", "insert"):
        assert value(samples, "db_query_duration_seconds_count", operation=operation) > 0
    assert value(samples, "errors_total", error_type="VerifierUnavailable", severity="warning") == 1
    assert (
        value(
            samples,
            "http_requests_total",
            method="POST",
            endpoint="/api/v1/mandates",
            status_code="201",
        )
        == 2
    )
    assert (
        value(
            samples,
            "http_requests_total",
            endpoint="/api/v1/mandates/{mandate_id}",
            status_code="200",
        )
        == 1
    )


def check_log_events(api: ServiceProcess) -> None:
    by_event: dict[str, list[dict[str, object]]] = {}
    for record in api.json_logs():
        by_event.setdefault(str(record["event"]), []).append(record)
    attempts = by_event["auth_attempt"]
    assert [a["result"] for a in attempts] == ["failed", "success"]
    assert all({"user_id", "ip_address", "success"} <= set(a) for a in attempts)
    started = by_event["create_mandate_started"]
    assert len(started) == 3
    assert all(s["tenant_id"] == TENANT and s["user_id"] for s in started)
    completed = by_event["create_mandate_completed"]
    assert [c["verification_status"] for c in completed] == ["VALID", "SIG_INVALID"]
    assert all({"mandate_id", "tenant_id", "duration_ms", "user_id"} <= set(c) for c in completed)
    (failed,) = by_event["operation_failed"]
    assert failed["operation"] == "create_mandate"
    assert failed["error_type"] == "VerifierUnavailable"
    assert failed["level"] == "error"
    assert "trace_id" in failed


def check_trace_crosses_the_hop(otlp: OtlpReceiver) -> None:
    """One trace crosses the hop: the verifier's server span is a child of the api's client span."""
    otlp.wait_for(lambda r: len(r.service_spans("mandate-vault-jwt-verifier")) >= 2)
    client_spans = [s for s in otlp.service_spans("mandate-vault-api") if s.kind == 3]
    server_spans = [s for s in otlp.service_spans("mandate-vault-jwt-verifier") if s.kind == 2]
    parents = {(s.trace_id, s.span_id) for s in client_spans}
    assert server_spans
    assert all((s.trace_id, s.parent_span_id) in parents for s in server_spans)


def test_metrics_and_log_events_after_real_requests(
    stack: tuple[ServiceProcess, ServiceProcess], bank: Issuer, otlp: OtlpReceiver
) -> None:
    api, verifier = stack
    samples = make_requests(api, verifier, bank)
    check_metrics(samples)
    check_log_events(api)
    check_trace_crosses_the_hop(otlp)


def test_readiness_follows_the_database(stack: tuple[ServiceProcess, ServiceProcess]) -> None:
    api, _ = stack
    ready = httpx.get(f"{api.url}/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok"}
