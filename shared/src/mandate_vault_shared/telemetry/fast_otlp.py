"""The fast instruments over OTLP: each batch the SDK's periodic reader exports also carries them,
as cumulative Sum and Histogram points with the same names, attributes, buckets and exemplars."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

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

from mandate_vault_shared.telemetry.fast_metrics import (
    Buckets,
    FastCounter,
    FastHistogram,
    FastMetrics,
)
from mandate_vault_shared.telemetry.instruments import attributes_of
from mandate_vault_shared.telemetry.seams import preferences


def otlp_metrics(fast: FastMetrics) -> list[Metric]:
    """The fast instruments as cumulative OTLP metrics, now."""
    now = time.time_ns()
    start = fast.start_time_unix_nano
    metrics = [_otlp_sum(c, start, now) for c in list(fast.counters.values()) if c.values]
    for gauge in list(fast.up_downs.values()):
        point = NumberDataPoint({}, start, now, gauge.value)
        data = Sum([point], AggregationTemporality.CUMULATIVE, is_monotonic=False)
        metrics.append(Metric(gauge.name, gauge.description, "", data))
    metrics += [_otlp_histogram(h, start, now) for h in list(fast.histograms.values()) if h.series]
    return metrics


def _otlp_sum(counter: FastCounter, start: int, now: int) -> Metric:
    points = [
        NumberDataPoint(attributes_of(counter.labels, labels), start, now, value)
        for labels, value in list(counter.values.items())
    ]
    data = Sum(points, AggregationTemporality.CUMULATIVE, is_monotonic=True)
    return Metric(counter.name, counter.description, counter.unit, data)


def _otlp_exemplars(series: Buckets) -> list[OtelExemplar]:
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
        fast = otlp_metrics(self._fast)
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
