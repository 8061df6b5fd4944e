"""Telemetry names: the operators' contract, in one place.

Metric names and labels come from the monitoring guide (docs/monitoring.md); PromQL, alert rules
and dashboards depend on them verbatim, so they are never spelled anywhere else.
"""

from typing import Final

# --- metrics: application and HTTP (every service) ---
APP_INFO: Final = "mandate_vault_app_info"
HTTP_REQUESTS_TOTAL: Final = "http_requests_total"
HTTP_REQUEST_DURATION: Final = "http_request_duration_seconds"
ERRORS_TOTAL: Final = "errors_total"
TELEMETRY_DROPPED_TOTAL: Final = "telemetry_dropped_total"

# --- metrics: business ---
MANDATES_CREATED_TOTAL: Final = "mandates_created_total"
MANDATES_ACTIVE: Final = "mandates_active"
JWT_VERIFICATIONS_TOTAL: Final = "jwt_verifications_total"
WEBHOOK_DELIVERIES_TOTAL: Final = "webhook_deliveries_total"
WEBHOOK_DELIVERY_DURATION: Final = "webhook_delivery_duration_seconds"
WEBHOOK_DEAD_LETTERS_TOTAL: Final = "webhook_dead_letters_total"
WEBHOOK_CONSUMER_LAG: Final = "webhook_consumer_lag"
# concurrent delivery: windows, circuit breakers, parked jobs (webhook-worker)
WEBHOOK_IN_FLIGHT: Final = "webhook_deliveries_in_flight"
WEBHOOK_SCHEDULED: Final = "webhook_deliveries_scheduled"
WEBHOOK_JOBS_PARKED_TOTAL: Final = "webhook_jobs_parked_total"
WEBHOOK_BREAKERS_OPEN: Final = "webhook_circuit_breakers_open"
WEBHOOK_BREAKER_TRANSITIONS_TOTAL: Final = "webhook_circuit_breaker_transitions_total"
# redelivery and endpoint health
WEBHOOK_REDELIVERIES_TOTAL: Final = "webhook_redeliveries_total"
WEBHOOK_ENDPOINTS_DISABLED_TOTAL: Final = "webhook_endpoints_disabled_total"
# end-to-end reconciliation: events the broker acknowledged and lost, published again (api)
WEBHOOK_EVENTS_RECONCILED_TOTAL: Final = "webhook_events_reconciled_total"
# the worker's consumer rebuilt after its consumer-group state broke (webhook-worker)
KAFKA_CONSUMER_REBUILDS_TOTAL: Final = "kafka_consumer_rebuilds_total"
OUTBOX_BACKLOG: Final = "outbox_backlog"
OUTBOX_OLDEST_AGE: Final = "outbox_oldest_unpublished_age_seconds"
AUTH_ATTEMPTS_TOTAL: Final = "auth_attempts_total"
ACTIVE_USERS: Final = "active_users"
RATE_LIMITED_TOTAL: Final = "rate_limited_total"
# Rate-limit checks decided per process because the shared store (Redis) was unreachable.
RATE_LIMIT_FALLBACK_TOTAL: Final = "rate_limit_fallback_total"
# Cache invalidations received from other replicas (revocations), and channel reconnects.
CACHE_INVALIDATIONS_TOTAL: Final = "cache_invalidations_total"

# --- metrics: admission control (shared/web/admission.py) ---
REQUESTS_SHED_TOTAL: Final = "requests_shed_total"
ADMISSION_CONCURRENCY_LIMIT: Final = "admission_concurrency_limit"
ADMISSION_IN_FLIGHT: Final = "admission_in_flight"
ADMISSION_QUEUED: Final = "admission_queued"

# --- metrics: system ---
DB_CONNECTIONS_ACTIVE: Final = "db_connections_active"
DB_QUERY_DURATION: Final = "db_query_duration_seconds"

# --- metrics: OpenTelemetry semantic conventions, beside the guide's (TELEMETRY_SEMCONV_METRICS)
# Prometheus shows them with dots as underscores and a unit suffix:
# http_server_request_duration_seconds, messaging_client_sent_messages_total, ...
SEMCONV_HTTP_SERVER_DURATION: Final = "http.server.request.duration"
SEMCONV_HTTP_CLIENT_DURATION: Final = "http.client.request.duration"
SEMCONV_DB_OPERATION_DURATION: Final = "db.client.operation.duration"
SEMCONV_MESSAGING_OPERATION_DURATION: Final = "messaging.client.operation.duration"
SEMCONV_MESSAGING_SENT: Final = "messaging.client.sent.messages"
SEMCONV_MESSAGING_PROCESS_DURATION: Final = "messaging.process.duration"
SEMCONV_MESSAGING_CONSUMED: Final = "messaging.client.consumed.messages"
# The conventions' advised buckets (seconds).
SEMCONV_HTTP_BUCKETS: Final = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)  # fmt: skip
SEMCONV_DB_BUCKETS: Final = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0)
# Semantic-convention attribute keys.
ATTR_HTTP_METHOD: Final = "http.request.method"
ATTR_HTTP_ROUTE: Final = "http.route"
ATTR_HTTP_STATUS: Final = "http.response.status_code"
ATTR_URL_SCHEME: Final = "url.scheme"
ATTR_ERROR_TYPE: Final = "error.type"
ATTR_SERVER_ADDRESS: Final = "server.address"
ATTR_SERVER_PORT: Final = "server.port"
ATTR_DB_SYSTEM: Final = "db.system.name"
ATTR_DB_OPERATION: Final = "db.operation.name"
ATTR_DB_QUERY: Final = "db.query.text"
ATTR_MESSAGING_SYSTEM: Final = "messaging.system"
ATTR_MESSAGING_OPERATION: Final = "messaging.operation.name"
ATTR_MESSAGING_OPERATION_TYPE: Final = "messaging.operation.type"
ATTR_MESSAGING_DESTINATION: Final = "messaging.destination.name"
ATTR_MESSAGING_GROUP: Final = "messaging.consumer.group.name"

# --- metric label keys ---
LABEL_METHOD: Final = "method"
LABEL_ENDPOINT: Final = "endpoint"
LABEL_STATUS_CODE: Final = "status_code"
LABEL_ERROR_TYPE: Final = "error_type"
LABEL_SEVERITY: Final = "severity"
LABEL_SIGNAL: Final = "signal"
LABEL_REASON: Final = "reason"
LABEL_SERVICE: Final = "service"
LABEL_BUDGET: Final = "budget"
LABEL_SOURCE: Final = "source"
LABEL_KIND: Final = "kind"

# Unmatched paths collapse to this single `endpoint` value so scanners cannot explode cardinality.
UNMATCHED_ENDPOINT: Final = "<unmatched>"

# Latency buckets in seconds: dense enough from 1 ms to 10 s for meaningful quantiles.
LATENCY_BUCKETS_SECONDS: Final = (
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075,
    0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)  # fmt: skip

# --- log events (guide) ---
EVENT_HTTP_REQUEST: Final = "http_request"
EVENT_HTTP_REQUEST_ERROR: Final = "http_request_error"
EVENT_CREATE_MANDATE_STARTED: Final = "create_mandate_started"
EVENT_CREATE_MANDATE_COMPLETED: Final = "create_mandate_completed"
EVENT_USER_ACTION: Final = "user_action"
EVENT_AUTH_ATTEMPT: Final = "auth_attempt"
EVENT_WEBHOOK_DELIVERY: Final = "webhook_delivery"
EVENT_OPERATION_FAILED: Final = "operation_failed"
EVENT_WEBHOOK_BREAKER: Final = "webhook_circuit_breaker"
EVENT_WEBHOOK_PARKED: Final = "webhook_job_parked"
EVENT_WEBHOOK_REDELIVERY_REQUESTED: Final = "webhook_redelivery_requested"
EVENT_WEBHOOK_ENDPOINT_DISABLED: Final = "webhook_endpoint_disabled"
EVENT_WEBHOOK_RECONCILED: Final = "webhook_event_reconciled"
EVENT_KAFKA_CONSUMER_REBUILT: Final = "kafka_consumer_rebuilt"

# --- span names and attributes of our own ---
SPAN_KAFKA_PROCESS: Final = "process"
ATTR_TENANT_ID: Final = "mandate_vault.tenant_id"
ATTR_EVENT_TYPE: Final = "mandate_vault.event_type"
