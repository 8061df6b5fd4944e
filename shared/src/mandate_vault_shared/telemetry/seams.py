"""Every place the telemetry code reaches into the OpenTelemetry SDK's private parts, in one module.

`opentelemetry-*` is pinned to one minor line (shared/pyproject.toml) because of them, and
tests/shared/test_sdk_seams.py checks each against the installed SDK: a release that moves one
fails that test by name instead of breaking telemetry quietly at run time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
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


def span_events_and_links(span: ReadableSpan) -> tuple[Sequence[Any], Sequence[Any]]:
    """A finished span's events and links without the public properties' copies (each takes
    a lock and builds a tuple, for lists that are nearly always empty)."""
    events: Sequence[Any] = span._events
    links: Sequence[Any] = span._links
    return events, links


def set_plain_attributes(span: Any, attributes: Mapping[str, str | int]) -> None:
    """`span.set_attributes` for values already valid (str, int), at the cost of a dict update:
    the SDK checks and copies each value and takes two locks per call. Falls back to the SDK's
    own path whenever that would do anything more (a span that is not an SDK span or has ended,
    a limit of OTEL_ATTRIBUTE_COUNT_LIMIT / OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT reached)."""
    bounded = getattr(span, "_attributes", None)
    inner = getattr(bounded, "_dict", None)
    if type(inner) is not dict or not _within_limits(bounded, inner, attributes):
        span.set_attributes(attributes)
        return
    with span._lock:
        ended = span._end_time is not None
        if not ended:
            for key, value in attributes.items():
                inner.pop(key, None)  # a key set again moves last, as in BoundedAttributes
                inner[key] = value
    if ended:
        span.set_attributes(attributes)  # the SDK's warning, once


def _within_limits(bounded: Any, inner: dict[str, Any], attributes: Mapping[str, Any]) -> bool:
    if bounded.maxlen is not None and len(inner) + len(attributes) > bounded.maxlen:
        return False
    longest = bounded.max_value_len
    for value in attributes.values():
        kind = type(value)
        if kind is str:
            if longest is not None and len(value) > longest:
                return False
        elif kind is not int:
            return False
    return True


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
