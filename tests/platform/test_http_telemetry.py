"""Metrics, logs and spans of real requests, read the way Prometheus, Loki and the collector would.

The api runs in both telemetry pipelines (TELEMETRY_PIPELINE=fast|sdk): they keep one contract."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import httpx
import pytest

from mandate_vault_harness.metrics import label_keys, scrape, value
from mandate_vault_harness.otlp import OtlpReceiver
from mandate_vault_harness.services import ServiceProcess

SERVER_KIND = 2  # opentelemetry.proto SpanKind SPAN_KIND_SERVER
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def otlp_env(receiver: OtlpReceiver) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_BLRP_SCHEDULE_DELAY": "100",
        "OTEL_METRIC_EXPORT_INTERVAL": "300",
    }


@pytest.fixture(params=["fast", "sdk"])
def api(otlp: OtlpReceiver, request: pytest.FixtureRequest):
    process = ServiceProcess("api", {**otlp_env(otlp), "TELEMETRY_PIPELINE": request.param})
    process.start()
    yield process
    process.stop()


def test_http_metrics_have_the_guide_names_and_labels(api: ServiceProcess) -> None:
    for _ in range(3):
        assert httpx.get(f"{api.url}/api/v1/info").status_code == 200
    for path in ("/nope", "/api/v1/mandates-typo/123"):
        assert httpx.get(f"{api.url}{path}").status_code == 404
    assert httpx.delete(f"{api.url}/api/v1/info").status_code == 405

    samples = scrape(api.url)
    total = "http_requests_total"
    assert value(samples, total, method="GET", endpoint="/api/v1/info", status_code="200") == 3
    # Raw paths never become label values: every unmatched path shares one series.
    assert value(samples, total, endpoint="<unmatched>", status_code="404") == 2
    assert value(samples, total, method="DELETE", endpoint="/api/v1/info", status_code="405") == 1
    assert not any("/nope" in str(s.labels) for s in samples)
    assert label_keys(samples, total) == {frozenset({"method", "endpoint", "status_code"})}

    bucket = "http_request_duration_seconds_bucket"
    assert label_keys(samples, bucket) == {frozenset({"method", "endpoint", "le"})}
    bounds = {s.labels["le"] for s in samples if s.name == bucket}
    assert {"0.001", "0.005", "0.01", "0.1", "1.0", "10.0", "+Inf"} <= bounds
    count = "http_request_duration_seconds_count"
    assert value(samples, count, method="GET", endpoint="/api/v1/info") == 3


def test_json_log_lines_carry_the_fields_and_the_span_of_the_request(
    api: ServiceProcess, otlp: OtlpReceiver
) -> None:
    response = httpx.get(f"{api.url}/api/v1/info", headers={"x-request-id": "req-42"})
    assert response.headers["x-request-id"] == "req-42"
    otlp.wait_for(lambda r: any(s.name == "GET /api/v1/info" for s in r.spans))

    lines = [r for r in api.json_logs() if r["event"] == "http_request"]
    assert len(lines) == 1
    line = lines[0]
    assert {"event", "level", "timestamp", "logger", "service", "trace_id", "span_id"} <= set(line)
    assert line["level"] == "info"
    assert line["service"] == "mandate-vault-api"
    assert ISO_UTC.match(line["timestamp"])
    assert line["method"] == "GET"
    assert line["route"] == "/api/v1/info"
    assert line["status"] == 200
    assert line["duration_ms"] >= 0
    assert line["request_id"] == "req-42"

    server = next(s for s in otlp.spans if s.name == "GET /api/v1/info")
    assert server.kind == SERVER_KIND
    assert (line["trace_id"], line["span_id"]) == (server.trace_id, server.span_id)


def test_spans_metrics_and_logs_reach_the_collector(
    api: ServiceProcess, otlp: OtlpReceiver
) -> None:
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    httpx.get(f"{api.url}/api/v1/info", headers={"traceparent": traceparent})
    httpx.get(f"{api.url}/healthz")
    httpx.get(f"{api.url}/api/v1/metrics")

    otlp.wait_for(lambda r: any(m.name == "http_requests_total" for m in r.metrics))
    otlp.wait_for(lambda r: any(log.body == "http_request" for log in r.logs))
    otlp.wait_for(lambda r: bool(r.spans))

    # One lean server span per request, continuing the caller's W3C trace; probes untraced.
    assert [s.name for s in otlp.spans] == ["GET /api/v1/info"]
    span = otlp.spans[0]
    assert span.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert span.parent_span_id == "b7ad6b7169203331"
    assert span.resource["service.name"] == "mandate-vault-api"
    assert span.resource["service.version"] == "0.1.0"
    assert span.resource["deployment.environment"] == "development"

    access = next(log for log in otlp.logs if log.body == "http_request")
    assert access.trace_id == span.trace_id
    assert access.attributes["route"] == "/api/v1/info"
    names = {m.name for m in otlp.metrics}
    assert {
        "http_requests_total",
        "http_request_duration_seconds",
        "mandate_vault_app_info",
    } <= names


def test_text_format_is_one_line_per_event(canary_service: Callable[..., ServiceProcess]) -> None:
    process = canary_service({"LOG_FORMAT": "text"}).start()
    try:
        forged = 'hello\r\n{"event":"forged","level":"error"}\nsecond line'
        httpx.post(f"{process.url}/echo", json={"note": forged})
        httpx.get(f"{process.url}/api/v1/info")
    finally:
        process.stop()
    lines = process.output().splitlines()
    echo = [line for line in lines if "canary_echo" in line]
    assert len(echo) == 1
    assert not any(line.startswith(("{", "second line")) for line in lines)
    access = next(line for line in lines if " http_request " in line and "GET" in line)
    timestamp, level = access.split(" ")[:2]
    assert ISO_UTC.match(timestamp)
    assert level == "info"
    assert "route=/api/v1/info" in access
    assert "trace_id=" in access


def test_json_format_cannot_be_forged_with_newlines(
    canary_service: Callable[..., ServiceProcess],
) -> None:
    process = canary_service().start()
    try:
        forged = 'x\r\n{"event":"forged","level":"error"}'
        httpx.post(f"{process.url}/echo", json={"note": forged})
    finally:
        process.stop()
    records = [json.loads(line) for line in process.output().splitlines()]
    assert [r["note"] for r in records if r["event"] == "canary_echo"] == [forged]
    assert not any(r["event"] == "forged" for r in records)


def test_server_errors_are_counted_and_logged(
    canary_service: Callable[..., ServiceProcess],
) -> None:
    process = canary_service().start()
    try:
        response = httpx.get(f"{process.url}/boom")
        samples = scrape(process.url)
    finally:
        process.stop()
    assert response.status_code == 500
    body = response.json()
    assert body == {
        "error": "internal_error",
        "detail": "An unexpected error occurred.",
        "request_id": response.headers["x-request-id"],
    }
    assert value(samples, "errors_total", error_type="RuntimeError", severity="error") == 1
    assert label_keys(samples, "errors_total") == {frozenset({"error_type", "severity"})}
    errors = [r for r in process.json_logs() if r["event"] == "http_request_error"]
    assert len(errors) == 1
    assert errors[0]["level"] == "error"
    assert errors[0]["status"] == 500
    assert errors[0]["route"] == "/boom"
