"""The worker's instruments (names from the monitoring guide, plus the delivery machinery's)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from mandate_vault_shared.messages import EventType
from mandate_vault_shared.telemetry import names
from mandate_vault_shared.telemetry.metrics import seconds_histogram

SUCCESS = "success"
FAILED = "failed"
PARK_REASONS = ("window_full", "breaker_open")
BREAKER_STATES = ("open", "half_open", "closed")
# Who asked for a redelivery, and how (see the api's `redelivery` module).
REDELIVERY_SOURCES = ("api", "cli")
REDELIVERY_KINDS = ("retry", "recover", "replay")
OTHER = "other"


REBUILD_REASONS = ("no_fetch_progress", "offsets_past_log_end", "unexpected_error")


class WorkerMetrics:
    def __init__(self, meter: Meter, service: str = "mandate-vault-webhook-worker") -> None:
        self._service = service
        self._deliveries = meter.create_counter(
            names.WEBHOOK_DELIVERIES_TOTAL,
            description="Webhook delivery attempts by event type and status (success|failed)",
        )
        self._duration = seconds_histogram(
            meter, names.WEBHOOK_DELIVERY_DURATION, "Webhook delivery attempt latency"
        )
        self._dead_letters = meter.create_counter(
            names.WEBHOOK_DEAD_LETTERS_TOTAL,
            description="Webhook events sent to the dead-letter topic",
        )
        self._parked = meter.create_counter(
            names.WEBHOOK_JOBS_PARKED_TOTAL,
            description="Jobs parked in the delivery table instead of being sent now, by reason "
            "(window_full|breaker_open)",
        )
        self._breaker_moves = meter.create_counter(
            names.WEBHOOK_BREAKER_TRANSITIONS_TOTAL,
            description="Circuit breaker state changes of subscriptions, by the state entered",
        )
        self._redeliveries = meter.create_counter(
            names.WEBHOOK_REDELIVERIES_TOTAL,
            description="Redeliveries asked for by a tenant (api) or an operator (cli) and taken "
            "up by this worker, by kind (retry|recover|replay)",
        )
        self._rebuilds = meter.create_counter(
            names.KAFKA_CONSUMER_REBUILDS_TOTAL,
            description="Kafka consumers rebuilt because the consumer-group state was broken, "
            "by reason (no_fetch_progress|offsets_past_log_end|unexpected_error)",
        )
        meter.create_observable_gauge(
            names.WEBHOOK_CONSUMER_LAG,
            callbacks=[self._observe_lag],
            description="Messages not yet consumed: highwater minus committed offset",
        )
        for name, callback, description in (
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
            meter.create_observable_gauge(name, callbacks=[callback], description=description)
        self.lag: dict[tuple[str, int], int] = {}
        self.scheduled: int | None = None  # from the database, refreshed periodically
        self._in_flight: Callable[[], int] = lambda: 0
        self._breakers: Callable[[], int] = lambda: 0
        # Every series exists from the start at 0, so the first failure or dead letter after a
        # restart shows in rate()/increase() (and fires its alert).
        for event_type in EventType:
            for status in (SUCCESS, FAILED):
                self._deliveries.add(0, {"event_type": event_type.value, "status": status})
            self._dead_letters.add(0, {"event_type": event_type.value})
        for reason in PARK_REASONS:
            self._parked.add(0, {names.LABEL_REASON: reason})
        for state in BREAKER_STATES:
            self._breaker_moves.add(0, {"state": state})
        for source in REDELIVERY_SOURCES:
            for kind in REDELIVERY_KINDS:
                self._redeliveries.add(0, self._redelivery_labels(source, kind))
        for reason in REBUILD_REASONS:
            self._rebuilds.add(0, self._rebuild_labels(reason))

    def _redelivery_labels(self, source: str, kind: str) -> dict[str, str]:
        return {
            names.LABEL_SERVICE: self._service,
            names.LABEL_SOURCE: source,
            names.LABEL_KIND: kind,
        }

    def redelivered(self, marker: str) -> None:
        """One requested redelivery taken up; `marker` is the row's `<source>:<kind>`."""
        source, _, kind = marker.partition(":")
        self._redeliveries.add(
            1,
            self._redelivery_labels(
                source if source in REDELIVERY_SOURCES else OTHER,
                kind if kind in REDELIVERY_KINDS else OTHER,
            ),
        )

    def attempt(self, event_type: str, status: str, seconds: float) -> None:
        self._deliveries.add(1, {"event_type": event_type, "status": status})
        self._duration.record(seconds, {"event_type": event_type})

    def dead_lettered(self, event_type: str) -> None:
        self._dead_letters.add(1, {"event_type": event_type})

    def parked(self, reason: str) -> None:
        self._parked.add(1, {names.LABEL_REASON: reason})

    def breaker_moved(self, state: str) -> None:
        self._breaker_moves.add(1, {"state": state})

    def consumer_rebuilt(self, reason: str) -> None:
        self._rebuilds.add(1, self._rebuild_labels(reason))

    def _rebuild_labels(self, reason: str) -> dict[str, str]:
        return {names.LABEL_SERVICE: self._service, names.LABEL_REASON: reason}

    def observe_in_flight(self, count: Callable[[], int]) -> None:
        self._in_flight = count

    def observe_breakers(self, count: Callable[[], int]) -> None:
        self._breakers = count

    def _observe_lag(self, _: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(lag, {"topic": topic, "partition": str(partition)})
            for (topic, partition), lag in self.lag.items()
        ]

    def _observe_in_flight(self, _: CallbackOptions) -> Iterable[Observation]:
        return [Observation(self._in_flight())]

    def _observe_breakers(self, _: CallbackOptions) -> Iterable[Observation]:
        return [Observation(self._breakers())]

    def _observe_scheduled(self, _: CallbackOptions) -> Iterable[Observation]:
        return [] if self.scheduled is None else [Observation(self.scheduled)]
