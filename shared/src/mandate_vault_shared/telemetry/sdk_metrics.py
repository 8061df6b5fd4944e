"""The SDK pipeline's instruments: the `instruments.Metrics` API on OpenTelemetry SDK instruments.

Attribute dicts are built once per label-value tuple and reused. `ExemplarPrometheusReader` is
the SDK's Prometheus reader plus what it leaves out: the histogram exemplars the SDK's
reservoirs keep, shown in the OpenMetrics exposition.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Meter, Observation, UpDownCounter
from opentelemetry.metrics import Counter as OtelCounter
from opentelemetry.metrics import Histogram as OtelHistogram
from opentelemetry.sdk.metrics import Exemplar
from opentelemetry.sdk.metrics.export import Histogram, MetricsData
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric as PromMetric
from prometheus_client.samples import Exemplar as PromExemplar

from mandate_vault_shared.telemetry import seams
from mandate_vault_shared.telemetry.instruments import (
    DEFAULT_BOUNDS,
    Labels,
    Reading,
    attributes_of,
    label_name,
    prometheus_name,
)


class _Attributes:
    """label values -> attribute dict, built once per combination."""

    def __init__(self, keys: Sequence[str]) -> None:
        self._keys = tuple(keys)
        self._cache: dict[Labels, dict[str, str]] = {}

    def __call__(self, values: Labels) -> dict[str, str]:
        found = self._cache.get(values)
        if found is None:
            found = self._cache[values] = attributes_of(self._keys, values)
        return found


class SdkCounter:
    def __init__(self, counter: OtelCounter, keys: Sequence[str]) -> None:
        self._counter = counter
        self._attributes = _Attributes(keys)

    def add(self, labels: Labels, amount: float = 1.0) -> None:
        self._counter.add(amount, self._attributes(labels))


class SdkUpDown:
    def __init__(self, counter: UpDownCounter) -> None:
        self._counter = counter

    def add(self, amount: float) -> None:
        self._counter.add(amount)


class SdkHistogram:
    def __init__(self, histogram: OtelHistogram, keys: Sequence[str]) -> None:
        self._histogram = histogram
        self._attributes = _Attributes(keys)

    def record(self, labels: Labels, value: float) -> None:
        self._histogram.record(value, self._attributes(labels))


class SdkMetrics:
    def __init__(self, meter: Meter) -> None:
        self._meter = meter
        self._made: dict[str, Any] = {}  # one instrument per name, as the fast backend

    def counter(self, name: str, description: str, labels: Sequence[str] = ()) -> SdkCounter:
        if name not in self._made:
            self._made[name] = SdkCounter(
                self._meter.create_counter(name, description=description), labels
            )
        made: SdkCounter = self._made[name]
        return made

    def up_down(self, name: str, description: str) -> SdkUpDown:
        if name not in self._made:
            counter = self._meter.create_up_down_counter(name, description=description)
            self._made[name] = SdkUpDown(counter)
        made: SdkUpDown = self._made[name]
        return made

    def histogram(
        self,
        name: str,
        description: str,
        labels: Sequence[str] = (),
        *,
        unit: str = "s",
        bounds: Sequence[float] = DEFAULT_BOUNDS,
    ) -> SdkHistogram:
        if name not in self._made:
            histogram = self._meter.create_histogram(
                name,
                unit=unit,
                description=description,
                explicit_bucket_boundaries_advisory=list(bounds),
            )
            self._made[name] = SdkHistogram(histogram, labels)
        made: SdkHistogram = self._made[name]
        return made

    def observe(
        self, name: str, description: str, labels: Sequence[str], read: Reading, *, unit: str = ""
    ) -> None:
        keys = tuple(labels)

        def callback(_: CallbackOptions) -> list[Observation]:
            return [Observation(value, attributes_of(keys, values)) for values, value in read()]

        self._meter.create_observable_gauge(
            name, callbacks=[callback], unit=unit, description=description
        )


_SeriesKey = tuple[str, frozenset[tuple[str, str]]]


class ExemplarPrometheusReader(PrometheusMetricReader):
    """The SDK's Prometheus reader, with each histogram bucket's exemplar attached."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry=registry, scope_info_enabled=False)
        self._exemplars: dict[_SeriesKey, dict[str, PromExemplar]] = {}
        seams.wrap_prometheus_collector(self, registry, self._attach)

    def _receive_metrics(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> None:
        if metrics_data is not None:
            self._exemplars = dict(_histogram_exemplars(metrics_data))
        super()._receive_metrics(metrics_data, timeout_millis, **kwargs)

    def _attach(self, families: Iterable[PromMetric]) -> Iterator[PromMetric]:
        for family in families:
            if family.type == "histogram" and self._exemplars:
                family.samples = [self._with_exemplar(family.name, s) for s in family.samples]
            yield family

    def _with_exemplar(self, family: str, sample: Any) -> Any:
        if not sample.name.endswith("_bucket"):
            return sample
        labels = frozenset((k, v) for k, v in sample.labels.items() if k != "le" and v != "")
        found = self._exemplars.get((family, labels), {}).get(sample.labels["le"])
        return sample._replace(exemplar=found) if found is not None else sample


def _histogram_exemplars(
    metrics_data: MetricsData,
) -> Iterator[tuple[_SeriesKey, dict[str, PromExemplar]]]:
    for resource in metrics_data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if not isinstance(metric.data, Histogram):
                    continue
                name = prometheus_name(metric.name, metric.unit or "")
                for point in metric.data.data_points:
                    if not point.exemplars:
                        continue
                    labels = frozenset(
                        (label_name(k), str(v))
                        for k, v in (point.attributes or {}).items()
                        if v != ""
                    )
                    yield (name, labels), _by_bucket(point.explicit_bounds, point.exemplars)


def _by_bucket(bounds: Sequence[float], exemplars: Sequence[Exemplar]) -> dict[str, PromExemplar]:
    found: dict[str, PromExemplar] = {}
    for exemplar in exemplars:
        le = next((f"{float(b)}" for b in bounds if exemplar.value <= b), "+Inf")
        labels = {}
        if exemplar.trace_id:
            labels = {
                "trace_id": format(exemplar.trace_id, "032x"),
                "span_id": format(exemplar.span_id or 0, "016x"),
            }
        found[le] = PromExemplar(labels, exemplar.value, exemplar.time_unix_nano / 1e9)
    return found
