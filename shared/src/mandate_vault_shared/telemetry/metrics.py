"""HTTP server instruments every service records: the guide's and the semantic conventions'."""

from __future__ import annotations

from mandate_vault_shared.telemetry import names
from mandate_vault_shared.telemetry.instruments import Histogram, Labels, Metrics


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
        self._status_text: dict[int, str] = {}
        self._pairs: dict[tuple[str, str], Labels] = {}

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
        status_text = self._status_text.get(status)
        if status_text is None:
            status_text = self._status_text[status] = str(status)
        self._requests.add((method, endpoint, status_text))
        pair = self._pairs.get((method, endpoint))
        if pair is None:
            pair = self._pairs[(method, endpoint)] = (method, endpoint)
        self._duration.record(pair, seconds)
        if self._semconv is not None:
            route = "" if endpoint == names.UNMATCHED_ENDPOINT else endpoint
            error = error_type or (status_text if status >= 500 else "")
            self._semconv.record((method, route, status_text, scheme, error), seconds)

    def record_error(self, error_type: str, severity: str) -> None:
        self._errors.add((error_type, severity))
