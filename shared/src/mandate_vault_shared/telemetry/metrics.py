"""Instruments every service records, with attribute sets cached per label combination."""

from __future__ import annotations

from opentelemetry.metrics import Histogram, Meter

from mandate_vault_shared.telemetry import names


def seconds_histogram(meter: Meter, name: str, description: str) -> Histogram:
    """A latency histogram in seconds with buckets that make 1 ms..10 s quantiles meaningful."""
    return meter.create_histogram(
        name,
        unit="s",
        description=description,
        explicit_bucket_boundaries_advisory=list(names.LATENCY_BUCKETS_SECONDS),
    )


class HttpMetrics:
    """`http_requests_total`, `http_request_duration_seconds` and `errors_total`."""

    def __init__(self, meter: Meter) -> None:
        self._requests = meter.create_counter(
            names.HTTP_REQUESTS_TOTAL, description="Total HTTP requests"
        )
        self._duration = seconds_histogram(
            meter, names.HTTP_REQUEST_DURATION, "HTTP request latency"
        )
        self._errors = meter.create_counter(
            names.ERRORS_TOTAL, description="Total errors by type and severity"
        )
        self._request_attrs: dict[tuple[str, str, int], dict[str, str]] = {}
        self._duration_attrs: dict[tuple[str, str], dict[str, str]] = {}
        self._error_attrs: dict[tuple[str, str], dict[str, str]] = {}

    def record_request(self, method: str, endpoint: str, status: int, seconds: float) -> None:
        key = (method, endpoint, status)
        attrs = self._request_attrs.get(key)
        if attrs is None:
            attrs = self._request_attrs[key] = {
                names.LABEL_METHOD: method,
                names.LABEL_ENDPOINT: endpoint,
                names.LABEL_STATUS_CODE: str(status),
            }
        self._requests.add(1, attrs)
        duration_attrs = self._duration_attrs.get(key[:2])
        if duration_attrs is None:
            duration_attrs = self._duration_attrs[key[:2]] = {
                names.LABEL_METHOD: method,
                names.LABEL_ENDPOINT: endpoint,
            }
        self._duration.record(seconds, duration_attrs)

    def record_error(self, error_type: str, severity: str) -> None:
        key = (error_type, severity)
        attrs = self._error_attrs.get(key)
        if attrs is None:
            attrs = self._error_attrs[key] = {
                names.LABEL_ERROR_TYPE: error_type,
                names.LABEL_SEVERITY: severity,
            }
        self._errors.add(1, attrs)
