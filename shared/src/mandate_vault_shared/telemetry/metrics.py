"""Instruments every service records, with attribute sets cached per label combination."""

from __future__ import annotations

from opentelemetry.metrics import Histogram, Meter

from mandate_vault_shared.telemetry import names
from mandate_vault_shared.telemetry.fast_metrics import FastMetrics


def seconds_histogram(meter: Meter, name: str, description: str) -> Histogram:
    """A latency histogram in seconds with buckets that make 1 ms..10 s quantiles meaningful."""
    return meter.create_histogram(
        name,
        unit="s",
        description=description,
        explicit_bucket_boundaries_advisory=list(names.LATENCY_BUCKETS_SECONDS),
    )


class HttpMetrics:
    """`http_requests_total`, `http_request_duration_seconds` (fast instruments: every request
    records them) and `errors_total`."""

    def __init__(self, meter: Meter, fast: FastMetrics) -> None:
        self._requests = fast.counter(
            names.HTTP_REQUESTS_TOTAL,
            "Total HTTP requests",
            (names.LABEL_METHOD, names.LABEL_ENDPOINT, names.LABEL_STATUS_CODE),
        )
        self._duration = fast.histogram(
            names.HTTP_REQUEST_DURATION,
            "HTTP request latency",
            (names.LABEL_METHOD, names.LABEL_ENDPOINT),
            names.LATENCY_BUCKETS_SECONDS,
        )
        self._errors = meter.create_counter(
            names.ERRORS_TOTAL, description="Total errors by type and severity"
        )
        self._status_text: dict[int, str] = {}
        self._error_attrs: dict[tuple[str, str], dict[str, str]] = {}

    def record_request(self, method: str, endpoint: str, status: int, seconds: float) -> None:
        status_text = self._status_text.get(status)
        if status_text is None:
            status_text = self._status_text[status] = str(status)
        self._requests.add((method, endpoint, status_text))
        self._duration.record((method, endpoint), seconds)

    def record_error(self, error_type: str, severity: str) -> None:
        key = (error_type, severity)
        attrs = self._error_attrs.get(key)
        if attrs is None:
            attrs = self._error_attrs[key] = {
                names.LABEL_ERROR_TYPE: error_type,
                names.LABEL_SEVERITY: severity,
            }
        self._errors.add(1, attrs)
