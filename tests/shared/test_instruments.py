"""The one metric API: both backends (fast dicts, SDK instruments) show the same series.

The same recordings go through a process `Telemetry` built in each pipeline; the Prometheus
scrape (names, labels, values, buckets) and the OTLP points must be the same."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint
from prometheus_client.parser import text_string_to_metric_families

from mandate_vault_shared.kafka import consumer_span, producer_span
from mandate_vault_shared.settings import ServiceSettings
from mandate_vault_shared.telemetry import Telemetry, TelemetryOptions, create_telemetry


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("OTEL_", "TELEMETRY_")):
            monkeypatch.delenv(name)


def built(
    monkeypatch: pytest.MonkeyPatch, pipeline: str, reader: InMemoryMetricReader | None = None
) -> Telemetry:
    monkeypatch.setenv("TELEMETRY_PIPELINE", pipeline)
    options = TelemetryOptions(metric_readers=[reader] if reader else [])
    return create_telemetry("instruments", "1", ServiceSettings(), options)


class _Record:
    topic, partition, offset, headers = "jobs", 0, 7, None


def record_everything(telemetry: Telemetry) -> None:
    metrics = telemetry.metrics
    counter = metrics.counter("things_total", "Things", ("kind", "error.type"))
    counter.add(("a", ""))
    counter.add(("a", ""), 2)
    counter.add(("b", "Timeout"))
    histogram = metrics.histogram("work_seconds", "Work", ("kind",), bounds=(0.01, 0.1, 1.0))
    for value in (0.005, 0.05, 0.5, 5.0):
        histogram.record(("a",), value)
    metrics.up_down("open_things", "Open now").add(3)
    metrics.observe("seen", "Seen", ("where",), lambda: [(("here",), 4.0)])
    telemetry.http.record_request("GET", "/x", 200, 0.02)
    telemetry.http.record_request("GET", "<unmatched>", 404, 0.001)
    telemetry.http.record_error("Boom", "error")
    with producer_span(telemetry.messaging, "jobs", []):
        pass
    with consumer_span(telemetry.messaging, _Record(), "group"):
        pass
    telemetry.database("postgresql").finished("select", "SELECT 1", 0.003)


def scraped(telemetry: Telemetry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float | None]:
    """Series -> value (None for the sums of the durations the spans measured themselves)."""
    text = telemetry.prometheus_text().decode()
    measured = ("messaging_", "_sum")
    return {
        (s.name, tuple(sorted((k, v) for k, v in s.labels.items() if v))): (
            None if s.name.startswith(measured[0]) and s.name.endswith(measured[1]) else s.value
        )
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if not s.name.startswith(("target_info", "mandate_vault_app_info"))
    }


@pytest.fixture
def both(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Telemetry]]:
    telemetries = {pipeline: built(monkeypatch, pipeline) for pipeline in ("fast", "sdk")}
    yield telemetries
    for telemetry in telemetries.values():
        telemetry.shutdown()


def test_the_prometheus_series_are_the_same(both: dict[str, Telemetry]) -> None:
    for telemetry in both.values():
        record_everything(telemetry)
    fast, sdk = (scraped(both[p]) for p in ("fast", "sdk"))
    assert fast == sdk
    assert fast[("things_total", (("kind", "a"),))] == 3
    assert fast[("things_total", (("error_type", "Timeout"), ("kind", "b")))] == 1
    assert fast[("work_seconds_bucket", (("kind", "a"), ("le", "0.1")))] == 2
    assert fast[("open_things", ())] == 3
    assert fast[("seen", (("where", "here"),))] == 4
    semconv = (
        "http_server_request_duration_seconds_count",
        (
            ("http_request_method", "GET"),
            ("http_response_status_code", "200"),
            ("http_route", "/x"),
            ("url_scheme", "http"),
        ),
    )
    assert fast[semconv] == 1
    names = {name for name, _ in fast}
    assert {
        "messaging_client_sent_messages_total",
        "messaging_client_consumed_messages_total",
        "messaging_client_operation_duration_seconds_count",
        "messaging_process_duration_seconds_count",
        "db_client_operation_duration_seconds_count",
        "db_query_duration_seconds_count",
        "errors_total",
    } <= names


def _points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    assert data is not None
    found: dict[str, list[Any]] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                found.setdefault(metric.name, []).extend(metric.data.data_points)
    return found


def test_the_sdk_backend_records_on_sdk_instruments(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK pipeline's instruments are the SDK's own (any SDK reader sees them); the fast
    pipeline's reach OTLP through the merging exporter (tests/shared/test_fast_metrics.py)."""
    reader = InMemoryMetricReader()
    telemetry = built(monkeypatch, "sdk", reader)
    try:
        record_everything(telemetry)
        points = _points(reader)
    finally:
        telemetry.shutdown()
    (server,) = [p for p in points["http.server.request.duration"] if "http.route" in p.attributes]
    assert server.attributes == {
        "http.request.method": "GET",
        "http.route": "/x",
        "http.response.status_code": "200",
        "url.scheme": "http",
    }
    things = {tuple(sorted(p.attributes.items())): p.value for p in points["things_total"]}
    assert things[(("kind", "a"),)] == 3  # the empty error.type is left out
    assert all(isinstance(p, NumberDataPoint) for p in points["things_total"])
