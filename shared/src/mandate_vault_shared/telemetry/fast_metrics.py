"""The fast pipeline's instruments: a measurement costs a dict update, exported like any other.

The OpenTelemetry SDK spends ~20 us per measurement (attribute validation, hashing, exemplar
reservoirs); a request records several. These instruments aggregate in plain dicts on the event
loop's thread and are read only when something collects:

- Prometheus: `FastMetrics` is a prometheus_client collector registered next to the SDK's
  reader (OpenMetrics exposition carries histogram exemplars);
- OTLP: `fast_otlp.MergingMetricExporter` adds them, as cumulative Sum and Histogram points
  with the same names, attributes, buckets and exemplars, to every batch the SDK's periodic
  reader exports.

Observed gauges (read only at collection) stay on the SDK meter. Exemplars follow
``OTEL_METRICS_EXEMPLAR_FILTER`` like the SDK: ``trace_based`` (default) keeps, per bucket, a
recent measurement taken inside a sampled span; ``always_on`` any; ``always_off`` none. (A
bucket's first measurements, then every 8th, are offered: the span lookup is the costly part.)
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from opentelemetry import trace
from opentelemetry.metrics import CallbackOptions, Meter, Observation
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Exemplar as PromExemplar
from prometheus_client.samples import Sample

from mandate_vault_shared.telemetry.instruments import (
    DEFAULT_BOUNDS,
    Labels,
    Reading,
    attributes_of,
    label_name,
    prometheus_name,
)

TRACE_BASED, ALWAYS_ON, ALWAYS_OFF = "trace_based", "always_on", "always_off"
_FIRST, _REFRESH = 2, 8


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
class Buckets:
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
    series: dict[Labels, Buckets] = field(default_factory=dict)

    def record(self, labels: Labels, value: float) -> None:
        buckets = self.series.get(labels)
        if buckets is None:
            buckets = self.series[labels] = Buckets([0] * (len(self.bounds) + 1))
        index = bisect_left(self.bounds, value)
        hits = buckets.counts[index] = buckets.counts[index] + 1
        buckets.total += value
        buckets.count += 1
        buckets.low = min(buckets.low, value)
        buckets.high = max(buckets.high, value)
        # Looking up the current span costs more than all the rest: a bucket is offered its
        # first measurements (a rare slow one is the exemplar worth having) and then every
        # `_REFRESH`th, so a hot bucket still gets a fresh sampled one every so often.
        if self.exemplar_filter != ALWAYS_OFF and (hits <= _FIRST or not hits % _REFRESH):
            self._offer(buckets, index, value)

    def _offer(self, buckets: Buckets, index: int, value: float) -> None:
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
    def collect(self) -> Iterator[Metric]:
        """The families, each sample with its present labels only (an empty value is an absent
        attribute, as over OTLP and as Prometheus stores it)."""
        for counter in list(self.counters.values()):
            base = prometheus_name(counter.name).removesuffix("_total")
            family = Metric(base, counter.description, "counter")
            for values, value in list(counter.values.items()):
                labels = _present(counter.labels, values)
                family.samples.append(Sample(f"{base}_total", labels, value))
            yield family
        for gauge in list(self.up_downs.values()):
            yield GaugeMetricFamily(gauge.name, gauge.description, value=gauge.value)
        for histogram in list(self.histograms.values()):
            name = prometheus_name(histogram.name, histogram.unit)
            family = Metric(name, histogram.description, "histogram")
            for values, series in list(histogram.series.items()):
                labels = _present(histogram.labels, values)
                family.samples += _histogram_samples(name, labels, histogram.bounds, series)
            yield family


def _prom_exemplar(sampled: _Sampled | None) -> PromExemplar | None:
    if sampled is None:
        return None
    labels = {}
    if sampled.trace_id:
        labels = {
            "trace_id": format(sampled.trace_id, "032x"),
            "span_id": format(sampled.span_id, "016x"),
        }
    return PromExemplar(labels, sampled.value, sampled.time_unix_nano / 1e9)


def _present(keys: Sequence[str], values: Labels) -> dict[str, str]:
    return {label_name(k): v for k, v in zip(keys, values, strict=True) if v != ""}


def _histogram_samples(
    name: str, labels: dict[str, str], bounds: Sequence[float], series: Buckets
) -> list[Sample]:
    samples = [
        Sample(f"{name}_bucket", {**labels, "le": le}, value, None, exemplar)
        for le, value, exemplar in _cumulative(bounds, series)
    ]
    samples.append(Sample(f"{name}_count", labels, float(series.count)))
    samples.append(Sample(f"{name}_sum", labels, series.total))
    return samples


def _cumulative(
    bounds: Sequence[float], series: Buckets
) -> list[tuple[str, float, PromExemplar | None]]:
    """(le, cumulative count, exemplar) per bucket."""
    running, points = 0, []
    for index, (bound, count) in enumerate(
        zip([*bounds, float("inf")], series.counts, strict=True)
    ):
        running += count
        le = "+Inf" if bound == float("inf") else repr(float(bound))
        points.append((le, float(running), _prom_exemplar(series.exemplars.get(index))))
    return points
