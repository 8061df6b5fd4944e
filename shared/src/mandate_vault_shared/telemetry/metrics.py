"""HTTP server instruments every service records: the guide's and the semantic conventions'."""

from __future__ import annotations

from typing import Final

from mandate_vault_shared.telemetry import names
from mandate_vault_shared.telemetry.instruments import Histogram, Labels, Metrics

# http_requests_total's, http_request_duration_seconds' and http.server.request.duration's.
_RequestLabels = tuple[Labels, Labels, Labels]
_MAX_CACHED_LABELS: Final = 4096


class HttpMetrics:
    """`http_requests_total`, `http_request_duration_seconds`, `errors_total` and, with
    semantic-convention metrics on, `http.server.request.duration`."""

    def __init__(self, metrics: Metrics, *, semconv: bool) -> None:
        self._requests = metrics.counter(
            names.HTTP_REQUESTS_TOTAL,
            "Total HTTP requests",
            (names.LABEL_METHOD, names.LABEL_ENDPOINT, names.LABEL_STATUS_CODE),
        )
        self._duration = metrics.histogram(
            names.HTTP_REQUEST_DURATION,
            "HTTP request latency",
            (names.LABEL_METHOD, names.LABEL_ENDPOINT),
        )
        self._errors = metrics.counter(
            names.ERRORS_TOTAL,
            "Total errors by type and severity",
            (names.LABEL_ERROR_TYPE, names.LABEL_SEVERITY),
        )
        self._semconv: Histogram | None = None
        if semconv:
            self._semconv = metrics.histogram(
                names.SEMCONV_HTTP_SERVER_DURATION,
                "Duration of HTTP server requests",
                (
                    names.ATTR_HTTP_METHOD,
                    names.ATTR_HTTP_ROUTE,
                    names.ATTR_HTTP_STATUS,
                    names.ATTR_URL_SCHEME,
                    names.ATTR_ERROR_TYPE,
                ),
                bounds=names.SEMCONV_HTTP_BUCKETS,
            )
        # Per (method, endpoint, status, scheme, error type): the three label tuples, built once.
        self._labels: dict[tuple[str, str, int, str, str | None], _RequestLabels] = {}

    def record_request(
        self,
        method: str,
        endpoint: str,
        status: int,
        seconds: float,
        *,
        scheme: str = "http",
        error_type: str | None = None,
    ) -> None:
        key = (method, endpoint, status, scheme, error_type)
        labels = self._labels.get(key)
        if labels is None:
            labels = self._request_labels(key)
        self._requests.add(labels[0])
        self._duration.record(labels[1], seconds)
        if self._semconv is not None:
            self._semconv.record(labels[2], seconds)

    def _request_labels(self, key: tuple[str, str, int, str, str | None]) -> _RequestLabels:
        method, endpoint, status, scheme, error_type = key
        status_text = str(status)
        route = "" if endpoint == names.UNMATCHED_ENDPOINT else endpoint
        error = error_type or (status_text if status >= 500 else "")
        if len(self._labels) >= _MAX_CACHED_LABELS:  # methods come from clients: keep it bounded
            self._labels.clear()
        labels = self._labels[key] = (
            (method, endpoint, status_text),
            (method, endpoint),
            (method, route, status_text, scheme, error),
        )
        return labels

    def record_error(self, error_type: str, severity: str) -> None:
        self._errors.add((error_type, severity))
