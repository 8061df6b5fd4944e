"""The worker's instruments (names from the monitoring guide, plus the delivery machinery's)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from mandate_vault_shared.messages import EventType
from mandate_vault_shared.telemetry import names
from mandate_vault_shared.telemetry.instruments import Labels, Metrics

SUCCESS = "success"
FAILED = "failed"
PARK_REASONS = ("window_full", "breaker_open")
BREAKER_STATES = ("open", "half_open", "closed")
Readings = Iterable[tuple[Labels, float]]
# Who asked for a redelivery, and how (see the api's `redelivery` module).
REDELIVERY_SOURCES = ("api", "cli")
REDELIVERY_KINDS = ("retry", "recover", "replay")
OTHER = "other"
# Why the consumer was rebuilt (see consumer.py and group_watch.py).
REBUILD_REASONS = ("no_fetch_progress", "offsets_past_log_end", "unexpected_error")


class WorkerMetrics:
    def __init__(self, metrics: Metrics, service: str = "mandate-vault-webhook-worker") -> None:
        self._service = service
        self._counters(metrics)
        self._gauges(metrics)
        self.lag: dict[tuple[str, int], int] = {}
        self.scheduled: int | None = None  # from the database, refreshed periodically
        self._in_flight: Callable[[], int] = lambda: 0
        self._breakers: Callable[[], int] = lambda: 0
        self._start_at_zero()

    def _counters(self, metrics: Metrics) -> None:
        self._deliveries = metrics.counter(
            names.WEBHOOK_DELIVERIES_TOTAL,
            "Webhook delivery attempts by event type and status (success|failed)",
            ("event_type", "status"),
        )
        self._duration = metrics.histogram(
            names.WEBHOOK_DELIVERY_DURATION, "Webhook delivery attempt latency", ("event_type",)
        )
        self._dead_letters = metrics.counter(
            names.WEBHOOK_DEAD_LETTERS_TOTAL,
            "Webhook events sent to the dead-letter topic",
            ("event_type",),
        )
        self._parked = metrics.counter(
            names.WEBHOOK_JOBS_PARKED_TOTAL,
            "Jobs parked in the delivery table instead of being sent now, by reason "
            "(window_full|breaker_open)",
            (names.LABEL_REASON,),
        )
        self._breaker_moves = metrics.counter(
            names.WEBHOOK_BREAKER_TRANSITIONS_TOTAL,
            "Circuit breaker state changes of subscriptions, by the state entered",
            ("state",),
        )
        self._redeliveries = metrics.counter(
            names.WEBHOOK_REDELIVERIES_TOTAL,
            "Redeliveries asked for by a tenant (api) or an operator (cli) and taken "
            "up by this worker, by kind (retry|recover|replay)",
            (names.LABEL_SERVICE, names.LABEL_SOURCE, names.LABEL_KIND),
        )
        self._rebuilds = metrics.counter(
            names.KAFKA_CONSUMER_REBUILDS_TOTAL,
            "Kafka consumers rebuilt because the consumer-group state was broken, by reason "
            "(no_fetch_progress|offsets_past_log_end|unexpected_error)",
            (names.LABEL_SERVICE, names.LABEL_REASON),
        )

    def _gauges(self, metrics: Metrics) -> None:
        metrics.observe(
            names.WEBHOOK_CONSUMER_LAG,
            "Messages not yet consumed: highwater minus committed offset",
            ("topic", "partition"),
            self._observe_lag,
        )
        for name, read, description in (
            (names.WEBHOOK_IN_FLIGHT, self._observe_in_flight, "Jobs in flight in this worker"),
            (
                names.WEBHOOK_BREAKERS_OPEN,
                self._observe_breakers,
                "Subscriptions whose circuit breaker is open or half-open in this worker",
            ),
            (
                names.WEBHOOK_SCHEDULED,
                self._observe_scheduled,
                "Deliveries waiting in the delivery table for a scheduled attempt (retries and "
                "parked jobs)",
            ),
        ):
            metrics.observe(name, description, (), read)

    def _start_at_zero(self) -> None:
        # Every series exists from the start at 0, so the first failure or dead letter after a
        # restart shows in rate()/increase() (and fires its alert).
        for event_type in EventType:
            for status in (SUCCESS, FAILED):
                self._deliveries.add((event_type.value, status), 0)
            self._dead_letters.add((event_type.value,), 0)
        for reason in PARK_REASONS:
            self._parked.add((reason,), 0)
        for state in BREAKER_STATES:
            self._breaker_moves.add((state,), 0)
        for source in REDELIVERY_SOURCES:
            for kind in REDELIVERY_KINDS:
                self._redeliveries.add((self._service, source, kind), 0)
        for reason in REBUILD_REASONS:
            self._rebuilds.add((self._service, reason), 0)

    def consumer_rebuilt(self, reason: str) -> None:
        self._rebuilds.add((self._service, reason if reason in REBUILD_REASONS else OTHER))

    def redelivered(self, marker: str) -> None:
        """One requested redelivery taken up; `marker` is the row's `<source>:<kind>`."""
        source, _, kind = marker.partition(":")
        self._redeliveries.add(
            (
                self._service,
                source if source in REDELIVERY_SOURCES else OTHER,
                kind if kind in REDELIVERY_KINDS else OTHER,
            )
        )

    def attempt(self, event_type: str, status: str, seconds: float) -> None:
        self._deliveries.add((event_type, status))
        self._duration.record((event_type,), seconds)

    def dead_lettered(self, event_type: str) -> None:
        self._dead_letters.add((event_type,))

    def parked(self, reason: str) -> None:
        self._parked.add((reason,))

    def breaker_moved(self, state: str) -> None:
        self._breaker_moves.add((state,))

    def observe_in_flight(self, count: Callable[[], int]) -> None:
        self._in_flight = count

    def observe_breakers(self, count: Callable[[], int]) -> None:
        self._breakers = count

    def _observe_lag(self) -> Readings:
        return [((topic, str(partition)), lag) for (topic, partition), lag in self.lag.items()]

    def _observe_in_flight(self) -> Readings:
        return [((), self._in_flight())]

    def _observe_breakers(self) -> Readings:
        return [((), self._breakers())]

    def _observe_scheduled(self) -> Readings:
        return [] if self.scheduled is None else [((), self.scheduled)]
