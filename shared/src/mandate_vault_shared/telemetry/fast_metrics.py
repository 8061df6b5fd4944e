"""Hot-path counters and histograms that cost a dict update, exported like any other metric.

The OpenTelemetry SDK spends ~20 us per measurement here (attribute validation, hashing,
exemplar reservoirs); a request records two (and a create-mandate a dozen database timings).
These instruments aggregate in plain dicts on the event loop's thread and are read only when
something collects:

- Prometheus: `FastMetrics` is a prometheus_client collector registered next to the SDK's;
- OTLP: `MergingMetricExporter` adds them, as cumulative Sum and Histogram points with the
  same names, labels and buckets, to every batch the SDK's periodic reader exports.

Use them for measurements taken on every request; everything else stays on the SDK.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector


@dataclass
class FastCounter:
    name: str  # as exposed, e.g. "http_requests_total"
    description: str
    labels: tuple[str, ...]
    values: dict[tuple[str, ...], float] = field(default_factory=dict)

    def add(self, label_values: tuple[str, ...], amount: float = 1.0) -> None:
        self.values[label_values] = self.values.get(label_values, 0.0) + amount


@dataclass
class FastGauge:
    """A value that goes up and down (connections checked out now)."""

    name: str
    description: str
    value: float = 0.0

    def add(self, amount: float) -> None:
        self.value += amount


@dataclass
class _Buckets:
    counts: list[int]
    total: float = 0.0
    count: int = 0
    low: float = float("inf")
    high: float = float("-inf")


@dataclass
class FastHistogram:
    name: str  # e.g. "http_request_duration_seconds"
    description: str
    labels: tuple[str, ...]
    bounds: tuple[float, ...]
    unit: str = "s"
    series: dict[tuple[str, ...], _Buckets] = field(default_factory=dict)

    def record(self, label_values: tuple[str, ...], value: float) -> None:
        buckets = self.series.get(label_values)
        if buckets is None:
            buckets = self.series[label_values] = _Buckets([0] * (len(self.bounds) + 1))
        buckets.counts[bisect.bisect_left(self.bounds, value)] += 1
        buckets.total += value
        buckets.count += 1
        buckets.low = min(buckets.low, value)
        buckets.high = max(buckets.high, value)


class FastMetrics(Collector):
    """The instruments, and their Prometheus and OTLP views."""

    def __init__(self) -> None:
        self.counters: list[FastCounter] = []
        self.gauges: list[FastGauge] = []
        self.histograms: list[FastHistogram] = []
        self.start_time_unix_nano = time.time_ns()
        self._lock = threading.Lock()

    def counter(self, name: str, description: str, labels: Sequence[str]) -> FastCounter:
        with self._lock:
            for existing in self.counters:
                if existing.name == name:
                    return existing
            instrument = FastCounter(name, description, tuple(labels))
            self.counters.append(instrument)
        return instrument

    def gauge(self, name: str, description: str) -> FastGauge:
        with self._lock:
            for existing in self.gauges:  # one per name: several engines share it
                if existing.name == name:
                    return existing
            instrument = FastGauge(name, description)
            self.gauges.append(instrument)
        return instrument

    def histogram(
        self, name: str, description: str, labels: Sequence[str], bounds: Sequence[float]
    ) -> FastHistogram:
        with self._lock:
            for existing in self.histograms:
                if existing.name == name:
                    return existing
            instrument = FastHistogram(name, description, tuple(labels), tuple(bounds))
            self.histograms.append(instrument)
        return instrument

    # --- Prometheus ---
    def collect(self) -> Iterator[Any]:
        for counter in self.counters:
            family = CounterMetricFamily(
                counter.name.removesuffix("_total"), counter.description, labels=counter.labels
            )
            for labels, value in list(counter.values.items()):
                family.add_metric(list(labels), value)
            yield family
        for gauge in self.gauges:
            yield GaugeMetricFamily(gauge.name, gauge.description, value=gauge.value)
        for histogram in self.histograms:
            buckets = HistogramMetricFamily(
                histogram.name, histogram.description, labels=histogram.labels
            )
            for labels, series in list(histogram.series.items()):
                buckets.add_metric(
                    list(labels), _cumulative(histogram.bounds, series), series.total
                )
            yield buckets

    # --- OTLP ---
    def otlp_metrics(self) -> list[Metric]:
        now = time.time_ns()
        start = self.start_time_unix_nano
        metrics = [_otlp_sum(c, start, now) for c in self.counters if c.values]
        for gauge in self.gauges:
            point = NumberDataPoint({}, start, now, gauge.value)
            metrics.append(Metric(gauge.name, gauge.description, "", Gauge([point])))
        metrics += [_otlp_histogram(h, start, now) for h in self.histograms if h.series]
        return metrics


def _otlp_sum(counter: FastCounter, start: int, now: int) -> Metric:
    points = [
        NumberDataPoint(dict(zip(counter.labels, labels, strict=True)), start, now, value)
        for labels, value in list(counter.values.items())
    ]
    data = Sum(points, AggregationTemporality.CUMULATIVE, is_monotonic=True)
    return Metric(counter.name, counter.description, "", data)


def _cumulative(bounds: Sequence[float], series: _Buckets) -> list[tuple[str, float]]:
    running, points = 0, []
    for bound, count in zip([*bounds, float("inf")], series.counts, strict=True):
        running += count
        points.append(("+Inf" if bound == float("inf") else repr(float(bound)), float(running)))
    return points


def _otlp_histogram(histogram: FastHistogram, start: int, now: int) -> Metric:
    points = [
        HistogramDataPoint(
            attributes=dict(zip(histogram.labels, labels, strict=True)),
            start_time_unix_nano=start,
            time_unix_nano=now,
            count=series.count,
            sum=series.total,
            bucket_counts=list(series.counts),
            explicit_bounds=list(histogram.bounds),
            min=series.low,
            max=series.high,
        )
        for labels, series in list(histogram.series.items())
    ]
    data = Histogram(points, AggregationTemporality.CUMULATIVE)
    return Metric(histogram.name, histogram.description, histogram.unit, data)


class MergingMetricExporter(MetricExporter):
    """Wraps the OTLP metric exporter: each export also carries the fast instruments."""

    def __init__(
        self,
        inner: MetricExporter,
        fast: FastMetrics,
        resource: Resource,
        scope: InstrumentationScope,
    ) -> None:
        super().__init__(
            preferred_temporality=inner._preferred_temporality,
            preferred_aggregation=inner._preferred_aggregation,
        )
        self._inner = inner
        self._fast = fast
        self._resource = resource
        self._scope = scope

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        resources = list(metrics_data.resource_metrics)
        if not resources:
            resources = [ResourceMetrics(self._resource, [], "")]
        resources[0] = replace(resources[0], scope_metrics=self._merged(resources[0]))
        return self._inner.export(MetricsData(resources), timeout_millis=timeout_millis, **kwargs)

    def _merged(self, resource: ResourceMetrics) -> list[ScopeMetrics]:
        # The OTLP encoder keys scopes by identity: metrics of a scope that appears twice
        # would overwrite each other, so ours join the SDK's scope when it has the same one.
        fast = self._fast.otlp_metrics()
        scopes = list(resource.scope_metrics)
        for index, scope in enumerate(scopes):
            if scope.scope == self._scope:
                scopes[index] = replace(scope, metrics=[*scope.metrics, *fast])
                return scopes
        return [*scopes, ScopeMetrics(self._scope, fast, "")]

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._inner.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._inner.shutdown(timeout_millis=timeout_millis, **kwargs)
