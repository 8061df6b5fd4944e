"""One contract, two telemetry pipelines (TELEMETRY_PIPELINE=fast|sdk), on a real api process:
database spans under the request span, semantic-convention metrics beside the guide's (and a
setting that turns them off), exemplars on OTLP and in the OpenMetrics exposition, and an
export path that never exports its own log lines."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from mandate_vault_api import migrate
from mandate_vault_harness.metrics import label_keys, scrape
from mandate_vault_harness.net import free_port
from mandate_vault_harness.otlp import OtlpReceiver, Span
from mandate_vault_harness.services import ServiceProcess

PIPELINES = ["fast", "sdk"]
CLIENT_KIND = 3  # opentelemetry.proto SpanKind SPAN_KIND_CLIENT
EXPORT_PATH = ("urllib3", "requests", "opentelemetry", "grpc", "httpx", "httpcore")
LOGIN = "/api/v1/auth/login"


def otlp_env(receiver: OtlpReceiver, pipeline: str) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_BLRP_SCHEDULE_DELAY": "100",
        "OTEL_METRIC_EXPORT_INTERVAL": "300",
        "TELEMETRY_PIPELINE": pipeline,
    }


@pytest.fixture
def postgres_api(
    otlp: OtlpReceiver, database_url: str, request: pytest.FixtureRequest
) -> Iterator[ServiceProcess]:
    migrate.upgrade(database_url)
    env = {**otlp_env(otlp, request.param), "API_DATABASE_URL": database_url}
    process = ServiceProcess("api", env).start()
    yield process
    process.stop()


def present_labels(samples: list[Sample], name: str) -> set[frozenset[str]]:
    """Label keys with a value, per series (Prometheus drops empty labels on ingestion)."""
    return {frozenset(k for k, v in s.labels.items() if v) for s in samples if s.name == name}


def _login(api: ServiceProcess) -> None:
    answer = httpx.post(f"{api.url}{LOGIN}", json={"email": "nobody@x.example", "password": "p"})
    assert answer.status_code == 401


def _db_system(span: Span) -> str | None:
    return span.attributes.get("db.system.name") or span.attributes.get("db.system")


def _children_in_the_database(otlp: OtlpReceiver, server: Span) -> list[Span]:
    return [
        s
        for s in otlp.spans
        if s.trace_id == server.trace_id and s.kind == CLIENT_KIND and _db_system(s)
    ]


@pytest.mark.parametrize("postgres_api", PIPELINES, indirect=True)
def test_database_spans_are_children_of_the_request_span(
    postgres_api: ServiceProcess, otlp: OtlpReceiver
) -> None:
    _login(postgres_api)
    otlp.wait_for(lambda r: any(s.name == f"POST {LOGIN}" for s in r.spans))
    server = next(s for s in otlp.spans if s.name == f"POST {LOGIN}")
    otlp.wait_for(lambda r: bool(_children_in_the_database(r, server)))
    queries = _children_in_the_database(otlp, server)
    assert {_db_system(s) for s in queries} == {"postgresql"}
    ids = {s.span_id for s in otlp.spans if s.trace_id == server.trace_id}
    assert all(s.parent_span_id in ids for s in queries)  # under the request, not roots
    assert all(server.start_ns <= s.start_ns <= s.end_ns <= server.end_ns for s in queries)
    # Background statements (leader election, gauges) are not traces of their own.
    assert all(s.parent_span_id for s in otlp.spans if _db_system(s))


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_database_spans_on_sqlite(otlp: OtlpReceiver, sqlite_url: str, pipeline: str) -> None:
    process = ServiceProcess("api", {**otlp_env(otlp, pipeline), "API_DATABASE_URL": sqlite_url})
    process.start()
    try:
        _login(process)
        otlp.wait_for(lambda r: any(s.name == f"POST {LOGIN}" for s in r.spans))
        server = next(s for s in otlp.spans if s.name == f"POST {LOGIN}")
        otlp.wait_for(lambda r: bool(_children_in_the_database(r, server)))
    finally:
        process.stop()
    assert {_db_system(s) for s in _children_in_the_database(otlp, server)} == {"sqlite"}


def test_database_spans_follow_the_sampling_decision(otlp: OtlpReceiver, sqlite_url: str) -> None:
    env = {**otlp_env(otlp, "fast"), "API_DATABASE_URL": sqlite_url}
    process = ServiceProcess("api", env).start()
    try:
        unsampled = "00-1af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
        for _ in range(3):
            httpx.post(
                f"{process.url}{LOGIN}",
                json={"email": "nobody@x.example", "password": "p"},
                headers={"traceparent": unsampled},
            )
        _login(process)  # a sampled one, to know when export has happened
        otlp.wait_for(lambda r: any(s.name == f"POST {LOGIN}" for s in r.spans))
        time.sleep(0.5)
    finally:
        process.stop()
    assert not [s for s in otlp.spans if s.trace_id == "1af7651916cd43dd8448eb211c80319c"]


@pytest.mark.parametrize("postgres_api", PIPELINES, indirect=True)
def test_semantic_convention_metrics_beside_the_guide(
    postgres_api: ServiceProcess, otlp: OtlpReceiver
) -> None:
    httpx.get(f"{postgres_api.url}/api/v1/info")
    httpx.get(f"{postgres_api.url}/nope")
    _login(postgres_api)
    samples = scrape(postgres_api.url)
    names = {s.name for s in samples}
    assert {
        "http_server_request_duration_seconds_bucket",
        "db_client_operation_duration_seconds_bucket",
        "http_request_duration_seconds_bucket",
        "db_query_duration_seconds_bucket",
    } <= names
    assert present_labels(samples, "http_server_request_duration_seconds_count") == {
        frozenset({"http_request_method", "http_route", "http_response_status_code", "url_scheme"}),
        frozenset({"http_request_method", "http_response_status_code", "url_scheme"}),  # unmatched
    }
    assert frozenset({"db_system_name", "db_operation_name"}) in present_labels(
        samples, "db_client_operation_duration_seconds_count"
    )
    # The guide's series keep exactly their labels.
    assert label_keys(samples, "http_request_duration_seconds_count") == {
        frozenset({"method", "endpoint"})
    }
    assert label_keys(samples, "db_query_duration_seconds_count") == {frozenset({"operation"})}
    otlp.wait_for(
        lambda r: (
            {"http.server.request.duration", "db.client.operation.duration"}
            <= {m.name for m in r.metrics}
        )
    )
    server = next(m for m in otlp.metrics if m.name == "http.server.request.duration")
    assert server.unit == "s"
    assert {"http.request.method", "http.response.status_code", "url.scheme"} <= set(
        server.attributes
    )


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_semantic_convention_metrics_can_be_turned_off(otlp: OtlpReceiver, pipeline: str) -> None:
    env = {**otlp_env(otlp, pipeline), "TELEMETRY_SEMCONV_METRICS": "false"}
    process = ServiceProcess("api", env).start()
    try:
        httpx.get(f"{process.url}/api/v1/info")
        samples = scrape(process.url)
        otlp.wait_for(lambda r: any(m.name == "http_requests_total" for m in r.metrics))
    finally:
        process.stop()
    names = {s.name for s in samples}
    assert "http_request_duration_seconds_bucket" in names
    assert not any(name.startswith(("http_server_", "db_client_", "messaging_")) for name in names)
    assert not any("." in m.name for m in otlp.metrics)


def _openmetrics_exemplars(url: str) -> dict[str, list[dict[str, str]]]:
    """family -> the exemplars' labels, from one scrape (the SDK's reservoirs hand each
    exemplar to one collection)."""
    answer = httpx.get(
        f"{url}/api/v1/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert answer.headers["content-type"].startswith("application/openmetrics-text")
    found: dict[str, list[dict[str, str]]] = {}
    for parsed in text_string_to_metric_families(answer.text):
        for sample in parsed.samples:
            if sample.exemplar is not None:
                found.setdefault(parsed.name, []).append(sample.exemplar.labels)
    return found


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_latency_histograms_carry_exemplars_of_sampled_requests(
    otlp: OtlpReceiver, pipeline: str
) -> None:
    process = ServiceProcess("api", otlp_env(otlp, pipeline)).start()
    try:
        traceparent = "00-2af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        httpx.get(f"{process.url}/api/v1/info", headers={"traceparent": traceparent})
        exemplars = _openmetrics_exemplars(process.url)
        guide = exemplars.get("http_request_duration_seconds", [])
        semconv = exemplars.get("http_server_request_duration_seconds", [])
        plain = httpx.get(f"{process.url}/api/v1/metrics")
        otlp.wait_for(
            lambda r: any(
                m.name == "http_request_duration_seconds" and m.exemplars for m in r.metrics
            )
        )
    finally:
        process.stop()
    wanted = "2af7651916cd43dd8448eb211c80319c"
    assert [labels["trace_id"] for labels in guide] == [wanted]
    assert [labels["trace_id"] for labels in semconv] == [wanted]
    assert plain.headers["content-type"].startswith("text/plain")  # Prometheus text otherwise
    exported = [
        m for m in otlp.metrics if m.name == "http_request_duration_seconds" and m.exemplars
    ]
    assert {e["trace_id"] for m in exported for e in m.exemplars} == {wanted}


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_the_export_path_never_exports_its_own_log_lines(
    otlp: OtlpReceiver, sqlite_url: str, pipeline: str
) -> None:
    env = {
        **otlp_env(otlp, pipeline),
        "API_DATABASE_URL": sqlite_url,
        "LOG_LEVEL": "DEBUG",
        # Metric exports every 200 ms to a port nobody listens on: each failure is logged by
        # the exporter, and would be exported, and so on, if the export path fed on itself.
        "OTEL_METRIC_EXPORT_INTERVAL": "200",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": f"http://127.0.0.1:{free_port()}/v1/metrics",
        "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT": "0.2",
    }
    process = ServiceProcess("api", env).start()
    try:
        httpx.get(f"{process.url}/api/v1/info")
        time.sleep(8)  # idle: only the exporters are talking
        with otlp.lock:
            early = len(otlp.logs)
        time.sleep(4)
    finally:
        process.stop()
    exported_from = {str(line.attributes.get("logger", "")) for line in otlp.logs}
    assert not [name for name in exported_from if name.startswith(EXPORT_PATH)], exported_from
    assert early < 20, [line.body for line in otlp.logs]  # start-up lines and one request
    assert len(otlp.logs) - early <= 2  # idle: nothing feeds on itself
    failures = [line for line in process.output().splitlines() if "metrics" in line.lower()]
    assert failures, "the failing metric exports were logged (on stdout), not exported"
