"""Fast instruments: Prometheus text and OTLP batches show them like SDK instruments."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    Histogram,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from mandate_vault_shared.telemetry.fast_metrics import FastMetrics
from mandate_vault_shared.telemetry.fast_otlp import MergingMetricExporter

SCOPE = InstrumentationScope("mandate_vault", "1")


class Capture(MetricExporter):
    def __init__(self) -> None:
        super().__init__()
        self.batches: list[MetricsData] = []

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **_: Any
    ) -> MetricExportResult:
        self.batches.append(metrics_data)
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **_: Any) -> None:
        pass


def populated(fast: FastMetrics | None = None) -> FastMetrics:
    fast = fast or FastMetrics()
    requests = fast.counter("http_requests_total", "Total HTTP requests", ("method", "status_code"))
    requests.add(("GET", "200"))
    requests.add(("GET", "200"))
    latency = fast.histogram("latency_seconds", "Latency", ("method",), bounds=(0.01, 0.1, 1.0))
    for value in (0.005, 0.01, 0.05, 2.0):
        latency.record(("GET",), value)
    fast.up_down("connections_active", "Now").add(3)
    return fast


def test_prometheus_text() -> None:
    registry = CollectorRegistry()
    registry.register(populated())
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for s in family.samples
    }
    assert samples[("http_requests_total", (("method", "GET"), ("status_code", "200")))] == 2
    bucket = "latency_seconds_bucket"
    assert (
        samples[(bucket, (("le", "0.01"), ("method", "GET")))] == 2
    )  # le: 0.01 is in the 0.01 bucket
    assert samples[(bucket, (("le", "0.1"), ("method", "GET")))] == 3
    assert samples[(bucket, (("le", "1.0"), ("method", "GET")))] == 3
    assert samples[(bucket, (("le", "+Inf"), ("method", "GET")))] == 4
    assert samples[("latency_seconds_count", (("method", "GET"),))] == 4
    assert abs(samples[("latency_seconds_sum", (("method", "GET"),))] - 2.065) < 1e-9
    assert samples[("connections_active", ())] == 3


def test_otlp_batches_carry_them_in_the_sdk_scope() -> None:
    capture = Capture()
    fast = FastMetrics()
    exporter = MergingMetricExporter(capture, fast, Resource.create({}), SCOPE)
    provider = MeterProvider(
        resource=Resource.create({}),
        metric_readers=[PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)],
    )
    fast.bind(provider.get_meter(SCOPE.name, SCOPE.version))
    populated(fast)
    provider.get_meter(SCOPE.name, SCOPE.version).create_counter("sdk_total").add(1)
    provider.force_flush()
    (batch,) = capture.batches
    (resource,) = batch.resource_metrics
    (scope,) = resource.scope_metrics  # merged into the SDK's scope, not a second copy of it
    by_name = {metric.name: metric for metric in scope.metrics}
    assert set(by_name) == {
        "sdk_total",
        "http_requests_total",
        "latency_seconds",
        "connections_active",
    }
    requests = by_name["http_requests_total"].data
    assert isinstance(requests, Sum)
    assert requests.is_monotonic
    assert [(p.attributes, p.value) for p in requests.data_points] == [
        ({"method": "GET", "status_code": "200"}, 2)
    ]
    latency = by_name["latency_seconds"].data
    assert isinstance(latency, Histogram)
    (point,) = latency.data_points
    assert (point.count, list(point.bucket_counts), point.min, point.max) == (
        4,
        [2, 1, 0, 1],
        0.005,
        2.0,
    )
