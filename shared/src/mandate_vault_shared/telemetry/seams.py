"""Every place the telemetry code reaches into the OpenTelemetry SDK's private parts, in one module.

`opentelemetry-*` is pinned to one minor line (shared/pyproject.toml) because of them, and
tests/shared/test_sdk_seams.py checks each against the installed SDK: a release that moves one
fails that test by name instead of breaking telemetry quietly at run time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Final, Protocol

from opentelemetry.sdk.metrics.export import MetricExporter
from opentelemetry.sdk.trace import ReadableSpan
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric

# The batch processors log one warning per dropped item, here, with this message (and the
# SDK's own DuplicateFilter on that logger then hides the repeats for 20 s);
# export.QueueFullFilter turns each into telemetry_dropped_total{reason="queue_full"}.
QUEUE_FULL_LOGGER: Final = "opentelemetry.sdk._shared_internal"
QUEUE_FULL_MESSAGE: Final = "Queue full, dropping %s."


def count_before_the_sdk_filters(drop_filter: logging.Filter) -> Callable[[], None]:
    """Install `drop_filter` on the batch processors' logger ahead of the SDK's DuplicateFilter,
    so it sees every drop; returns what removes it."""
    logger = logging.getLogger(QUEUE_FULL_LOGGER)
    logger.filters.insert(0, drop_filter)
    return lambda: logger.removeFilter(drop_filter)


def batch_queue_full(processor: Any) -> bool:
    """Whether a `BatchSpanProcessor`'s queue is full (the next span would be dropped)."""
    inner = processor._batch_processor
    full: bool = len(inner._queue) >= inner._max_queue_size
    return full


class OtlpSender(Protocol):
    """What the SDK's OTLP/HTTP exporters use to POST a payload (with retries and timeout)."""

    def export(self, data: bytes) -> Any: ...

    def shutdown(self) -> None: ...


def sender_of(exporter: Any) -> OtlpSender:
    """The HTTP client inside an SDK OTLP/HTTP exporter, configured from the standard variables
    (endpoint, headers, timeout, compression, retries): the fast pipeline only encodes."""
    client: OtlpSender = exporter._client
    return client


def span_attributes(span: ReadableSpan) -> Mapping[str, Any] | None:
    """A finished span's attributes without the public property's defensive copy."""
    attributes: Mapping[str, Any] | None = span._attributes
    return attributes


def plain(values: Mapping[str, Any]) -> Mapping[str, Any]:
    """The dict inside the SDK's BoundedAttributes (a lock and a Python-level mapping around
    it); iterating it runs at C speed. Safe to read: the span has ended."""
    inner = getattr(values, "_dict", None)
    return inner if isinstance(inner, dict) else values


def preferences(exporter: MetricExporter) -> tuple[Any, Any]:
    """An exporter's temporality and aggregation preferences, to wrap it faithfully."""
    return exporter._preferred_temporality, exporter._preferred_aggregation


def wrap_prometheus_collector(
    reader: Any,
    registry: CollectorRegistry,
    post: Callable[[Iterable[Metric]], Iterator[Metric]],
) -> None:
    """Replace the collector the SDK's Prometheus reader registered with one that passes its
    families through `post` (the SDK leaves exemplars out of them)."""
    inner = reader._collector
    registry.unregister(inner)

    class _Wrapped:
        def collect(self) -> Iterator[Metric]:
            return post(inner.collect())

        def describe(self) -> list[Metric]:  # registering must not collect (nothing to read yet)
            return []

        def __getattr__(self, name: str) -> Any:  # the reader feeds it (add_metrics_data)
            return getattr(inner, name)

    wrapped = _Wrapped()
    registry.register(wrapped)
    reader._collector = wrapped  # the reader's shutdown unregisters this one
