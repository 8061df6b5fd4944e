"""The fast pipeline's instruments: a measurement costs a dict update, exported like any other.

The OpenTelemetry SDK spends ~20 us per measurement (attribute validation, hashing, exemplar
reservoirs); a request records several. These instruments aggregate in plain dicts on the event
loop's thread and are read only when something collects:

- Prometheus: `FastMetrics` is a prometheus_client collector registered next to the SDK's
  reader (OpenMetrics exposition carries histogram exemplars);
- OTLP: `MergingMetricExporter` adds them, as cumulative Sum and Histogram points with the
  same names, attributes, buckets and exemplars, to every batch the SDK's periodic reader
  exports.

Observed gauges (read only at collection) stay on the SDK meter. Exemplars follow
``OTEL_METRICS_EXEMPLAR_FILTER`` like the SDK: ``trace_based`` (default) keeps, per bucket, the
latest measurement taken inside a sampled span; ``always_on`` any; ``always_off`` none.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from opentelemetry import trace
from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.sdk.metrics import Exemplar as OtelExemplar
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
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
from prometheus_client.samples import Exemplar as PromExemplar

from mandate_vault_shared.telemetry.instruments import (
    DEFAULT_BOUNDS,
    Labels,
    Reading,
    attributes_of,
    label_name,
    prometheus_name,
)
from mandate_vault_shared.telemetry.seams import preferences

TRACE_BASED, ALWAYS_ON, ALWAYS_OFF = "trace_based", "always_on", "always_off"


@dataclass
class FastCounter:
    name: str  # e.g. "http_requests_total"
    description: str
    labels: tuple[str, ...]
    unit: str = ""
    values: dict[Labels, float] = field(default_factory=dict)

    def add(self, labels: Labels, amount: float = 1.0) -> None:
        self.values[labels] = self.values.get(labels, 0.0) + amount


@dataclass
class FastUpDown:
    name: str
    description: str
    value: float = 0.0

    def add(self, amount: float) -> None:
        self.value += amount


@dataclass(slots=True)
class _Sampled:
    """One exemplar: a measurement and the span it was taken in."""

    value: float
    time_unix_nano: int
    trace_id: int
    span_id: int


@dataclass
class _Buckets:
    counts: list[int]
    total: float = 0.0
    count: int = 0
    low: float = float("inf")
    high: float = float("-inf")
    exemplars: dict[int, _Sampled] = field(default_factory=dict)  # bucket index -> latest


@dataclass
class FastHistogram:
    name: str  # e.g. "http_request_duration_seconds" or "http.server.request.duration"
    description: str
    labels: tuple[str, ...]
    bounds: tuple[float, ...]
    unit: str = "s"
    exemplar_filter: str = TRACE_BASED
    series: dict[Labels, _Buckets] = field(default_factory=dict)

    def record(self, labels: Labels, value: float) -> None:
        buckets = self.series.get(labels)
        if buckets is None:
            buckets = self.series[labels] = _Buckets([0] * (len(self.bounds) + 1))
        index = bisect.bisect_left(self.bounds, value)
        buckets.counts[index] += 1
        buckets.total += value
        buckets.count += 1
        buckets.low = min(buckets.low, value)
        buckets.high = max(buckets.high, value)
        if self.exemplar_filter != ALWAYS_OFF:
            self._offer(buckets, index, value)

    def _offer(self, buckets: _Buckets, index: int, value: float) -> None:
        context = trace.get_current_span().get_span_context()
        if context.trace_flags.sampled or self.exemplar_filter == ALWAYS_ON:
            buckets.exemplars[index] = _Sampled(
                value, time.time_ns(), context.trace_id, context.span_id
            )


class FastMetrics(Collector):
    """The instruments (the `instruments.Metrics` API) and their Prometheus and OTLP views."""

    def __init__(self, exemplar_filter: str = TRACE_BASED, meter: Meter | None = None) -> None:
        self._meter = meter
        self._exemplar_filter = exemplar_filter
        self.counters: dict[str, FastCounter] = {}
        self.up_downs: dict[str, FastUpDown] = {}
        self.histograms: dict[str, FastHistogram] = {}
        self.start_time_unix_nano = time.time_ns()
        self._lock = threading.Lock()

    def bind(self, meter: Meter) -> None:
        """The SDK meter observed gauges are created on (made after the exporter that merges
        these instruments into its batches)."""
        self._meter = meter

    def counter(self, name: str, description: str, labels: Sequence[str] = ()) -> FastCounter:
        with self._lock:  # one instrument per name: several engines or apps share it
            if name not in self.counters:
                self.counters[name] = FastCounter(name, description, tuple(labels))
            return self.counters[name]

    def up_down(self, name: str, description: str) -> FastUpDown:
        with self._lock:
            if name not in self.up_downs:
                self.up_downs[name] = FastUpDown(name, description)
            return self.up_downs[name]

    def histogram(
        self,
        name: str,
        description: str,
        labels: Sequence[str] = (),
        *,
        unit: str = "s",
        bounds: Sequence[float] = DEFAULT_BOUNDS,
    ) -> FastHistogram:
        with self._lock:
            if name not in self.histograms:
                self.histograms[name] = FastHistogram(
                    name, description, tuple(labels), tuple(bounds), unit, self._exemplar_filter
                )
            return self.histograms[name]

    def observe(
        self, name: str, description: str, labels: Sequence[str], read: Reading, *, unit: str = ""
    ) -> None:
        keys = tuple(labels)

        def callback(_: CallbackOptions) -> list[Observation]:
            return [Observation(value, attributes_of(keys, values)) for values, value in read()]

        assert self._meter is not None, "bind() a meter first"
        self._meter.create_observable_gauge(
            name, callbacks=[callback], unit=unit, description=description
        )

    # --- Prometheus ---
    def collect(self) -> Iterator[Any]:
        for counter in list(self.counters.values()):
            family = CounterMetricFamily(
                prometheus_name(counter.name).removesuffix("_total"),
                counter.description,
                labels=[label_name(key) for key in counter.labels],
            )
            for labels, value in list(counter.values.items()):
                family.add_metric(list(labels), value)
            yield family
        for gauge in list(self.up_downs.values()):
            yield GaugeMetricFamily(gauge.name, gauge.description, value=gauge.value)
        for histogram in list(self.histograms.values()):
            buckets = HistogramMetricFamily(
                prometheus_name(histogram.name, histogram.unit),
                histogram.description,
                labels=[label_name(key) for key in histogram.labels],
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
        metrics = [_otlp_sum(c, start, now) for c in list(self.counters.values()) if c.values]
        for gauge in list(self.up_downs.values()):
            point = NumberDataPoint({}, start, now, gauge.value)
            data = Sum([point], AggregationTemporality.CUMULATIVE, is_monotonic=False)
            metrics.append(Metric(gauge.name, gauge.description, "", data))
        metrics += [
            _otlp_histogram(h, start, now) for h in list(self.histograms.values()) if h.series
        ]
        return metrics


def _otlp_sum(counter: FastCounter, start: int, now: int) -> Metric:
    points = [
        NumberDataPoint(attributes_of(counter.labels, labels), start, now, value)
        for labels, value in list(counter.values.items())
    ]
    data = Sum(points, AggregationTemporality.CUMULATIVE, is_monotonic=True)
    return Metric(counter.name, counter.description, counter.unit, data)


def _prom_exemplar(sampled: _Sampled | None) -> tuple[PromExemplar, ...]:
    if sampled is None:
        return ()
    labels = {}
    if sampled.trace_id:
        labels = {
            "trace_id": format(sampled.trace_id, "032x"),
            "span_id": format(sampled.span_id, "016x"),
        }
    return (PromExemplar(labels, sampled.value, sampled.time_unix_nano / 1e9),)


def _cumulative(bounds: Sequence[float], series: _Buckets) -> list[Any]:
    running, points = 0, []
    for index, (bound, count) in enumerate(
        zip([*bounds, float("inf")], series.counts, strict=True)
    ):
        running += count
        le = "+Inf" if bound == float("inf") else repr(float(bound))
        points.append((le, float(running), *_prom_exemplar(series.exemplars.get(index))))
    return points


def _otlp_exemplars(series: _Buckets) -> list[OtelExemplar]:
    return [
        OtelExemplar({}, s.value, s.time_unix_nano, s.span_id or None, s.trace_id or None)
        for s in list(series.exemplars.values())
    ]


def _otlp_histogram(histogram: FastHistogram, start: int, now: int) -> Metric:
    points = [
        HistogramDataPoint(
            attributes=attributes_of(histogram.labels, labels),
            start_time_unix_nano=start,
            time_unix_nano=now,
            count=series.count,
            sum=series.total,
            bucket_counts=list(series.counts),
            explicit_bounds=list(histogram.bounds),
            min=series.low,
            max=series.high,
            exemplars=_otlp_exemplars(series),
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
        temporality, aggregation = preferences(inner)
        super().__init__(preferred_temporality=temporality, preferred_aggregation=aggregation)
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
