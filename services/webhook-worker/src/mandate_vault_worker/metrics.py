"""The worker's instruments (names from the monitoring guide)."""

from __future__ import annotations

from collections.abc import Iterable

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from mandate_vault_shared.messages import EventType
from mandate_vault_shared.telemetry import names
from mandate_vault_shared.telemetry.metrics import seconds_histogram

SUCCESS = "success"
FAILED = "failed"


class WorkerMetrics:
    def __init__(self, meter: Meter) -> None:
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
        meter.create_observable_gauge(
            names.WEBHOOK_CONSUMER_LAG,
            callbacks=[self._observe_lag],
            description="Messages not yet consumed: highwater minus committed offset",
        )
        self.lag: dict[tuple[str, int], int] = {}
        # Every series exists from the start at 0, so the first failure or dead letter after a
        # restart shows in rate()/increase() (and fires its alert).
        for event_type in EventType:
            for status in (SUCCESS, FAILED):
                self._deliveries.add(0, {"event_type": event_type.value, "status": status})
            self._dead_letters.add(0, {"event_type": event_type.value})

    def attempt(self, event_type: str, status: str, seconds: float) -> None:
        self._deliveries.add(1, {"event_type": event_type, "status": status})
        self._duration.record(seconds, {"event_type": event_type})

    def dead_lettered(self, event_type: str) -> None:
        self._dead_letters.add(1, {"event_type": event_type})

    def _observe_lag(self, _: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(lag, {"topic": topic, "partition": str(partition)})
            for (topic, partition), lag in self.lag.items()
        ]
