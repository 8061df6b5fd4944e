"""The one metric API service code uses, whichever pipeline (`TELEMETRY_PIPELINE`) runs it.

Instruments are declared with their label KEYS and recorded with label VALUES in the same
order, so a hot path hands over a tuple and nothing is built per measurement::

    created = telemetry.metrics.counter("mandates_created_total", "...", ("tenant_id", "status"))
    created.add((tenant_id, status))

A label value of ``""`` means "absent": the attribute is left out (semantic conventions omit,
e.g., ``error.type`` on success). Two implementations keep one contract
(tests/shared/test_instruments.py runs both): `fast_metrics.FastMetrics` (plain dicts, read
only when something collects) and `sdk_metrics.SdkMetrics` (OpenTelemetry SDK instruments).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Final, Protocol

from mandate_vault_shared.telemetry.names import LATENCY_BUCKETS_SECONDS

Labels = tuple[str, ...]
# Observed gauges: read at collection time, one (label values, value) per series.
Reading = Callable[[], Iterable[tuple[Labels, float]]]
DEFAULT_BOUNDS: Final = LATENCY_BUCKETS_SECONDS
_INVALID: Final = re.compile(r"[^a-zA-Z0-9_:]")
_PROMETHEUS_UNITS: Final = {"s": "seconds", "ms": "milliseconds", "By": "bytes"}


class Counter(Protocol):
    def add(self, labels: Labels, amount: float = 1.0) -> None: ...


class UpDown(Protocol):
    """A value that goes up and down (connections checked out now)."""

    def add(self, amount: float) -> None: ...


class Histogram(Protocol):
    def record(self, labels: Labels, value: float) -> None: ...


class Metrics(Protocol):
    def counter(self, name: str, description: str, labels: Sequence[str] = ()) -> Counter: ...

    def up_down(self, name: str, description: str) -> UpDown: ...

    def histogram(
        self,
        name: str,
        description: str,
        labels: Sequence[str] = (),
        *,
        unit: str = "s",
        bounds: Sequence[float] = DEFAULT_BOUNDS,
    ) -> Histogram: ...

    def observe(
        self,
        name: str,
        description: str,
        labels: Sequence[str],
        read: Reading,
        *,
        unit: str = "",
    ) -> None: ...


def prometheus_name(name: str, unit: str = "") -> str:
    """The name Prometheus shows for an instrument: dots become underscores and a unit
    suffix is appended (``http.server.request.duration`` + ``s`` ->
    ``http_server_request_duration_seconds``), as the SDK's Prometheus exporter does."""
    sanitized = _INVALID.sub("_", name)
    suffix = _PROMETHEUS_UNITS.get(unit, "")
    if suffix and not sanitized.endswith(f"_{suffix}"):
        sanitized = f"{sanitized}_{suffix}"
    return sanitized


def label_name(key: str) -> str:
    return _INVALID.sub("_", key)


def attributes_of(keys: Sequence[str], values: Labels) -> dict[str, str]:
    """The attributes of one series: empty values are absent attributes."""
    return {key: value for key, value in zip(keys, values, strict=True) if value != ""}
