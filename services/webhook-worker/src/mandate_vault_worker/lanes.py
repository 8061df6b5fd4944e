"""Per-subscription admission: a bounded in-flight window and a circuit breaker.

Every delivery attempt, first or retry, asks its subscription's lane first. A lane admits while
its window (``WORKER_SUBSCRIPTION_WINDOW`` attempts in flight) has room and its breaker allows.
Otherwise the job is parked as a scheduled attempt in the delivery table, so a slow, failing or
timing-out endpoint fills only its own window and never holds a partition or another
subscription. Once a lane has parked jobs, its new jobs queue behind them (through the table)
until the retry poller has drained them, so a busy subscription's jobs keep their order of
arrival instead of newer ones overtaking the parked ones forever.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from mandate_vault_shared.telemetry import get_logger, names
from mandate_vault_worker.breaker import BreakerState, CircuitBreaker
from mandate_vault_worker.metrics import WorkerMetrics

_IDLE_LANE_SECONDS: Final = 600.0

log = get_logger(__name__)
Monotonic = Callable[[], float]


class Admission(StrEnum):
    ADMITTED = "admitted"
    WINDOW_FULL = "window_full"  # (or earlier jobs of the subscription are parked)
    BREAKER_OPEN = "breaker_open"


@dataclass
class Lane:
    subscription_id: str
    tenant_id: str
    breaker: CircuitBreaker
    in_flight: int = 0
    parked: bool = False  # this worker parked jobs that may still wait in the table
    used_at: float = field(default=0.0)


class Lanes:
    def __init__(
        self,
        window: int,
        threshold: int,
        cooldown_seconds: float,
        metrics: WorkerMetrics,
        clock: Monotonic = time.monotonic,
    ) -> None:
        self.window = window
        self._threshold = threshold
        self._cooldown = cooldown_seconds
        self._metrics = metrics
        self._clock = clock
        self._lanes: dict[str, Lane] = {}
        self.on_slot_freed: Callable[[Lane], None] = lambda _: None
        metrics.observe_breakers(self.breakers_not_closed)

    def lane(self, subscription_id: str, tenant_id: str) -> Lane:
        found = self._lanes.get(subscription_id)
        if found is None:
            breaker = CircuitBreaker(self._threshold, self._cooldown)
            found = self._lanes[subscription_id] = Lane(subscription_id, tenant_id, breaker)
        found.used_at = self._clock()
        return found

    def admit(self, lane: Lane, *, from_table: bool) -> Admission:
        """Take a slot for one attempt, or say why not. `from_table`: the job is a parked or
        scheduled one (it may pass the lane's other parked jobs)."""
        now = self._clock()
        self._report(lane, lane.breaker.refresh(now))
        if lane.breaker.blocks:
            return Admission.BREAKER_OPEN
        if lane.in_flight >= self.window or (lane.parked and not from_table):
            return Admission.WINDOW_FULL
        lane.breaker.take()
        lane.in_flight += 1
        return Admission.ADMITTED

    def release(self, lane: Lane, ok: bool | None) -> None:
        """The attempt finished: `ok` is its outcome for the breaker (None: counts neither way)."""
        lane.in_flight -= 1
        if ok is None:
            lane.breaker.abandon()
        else:
            self._report(lane, lane.breaker.record(ok, self._clock()))
        self.on_slot_freed(lane)

    def reopens_in(self, lane: Lane) -> float:
        """Seconds until the lane's breaker lets a probe through (0 when it is not open)."""
        if lane.breaker.state is not BreakerState.OPEN:
            return 0.0
        return max(lane.breaker.reopens_at - self._clock(), 0.0)

    def blocked(self) -> list[str]:
        """Subscriptions that cannot take an attempt now (full window or breaker)."""
        now = self._clock()
        found = []
        for lane in self._lanes.values():
            self._report(lane, lane.breaker.refresh(now))
            if lane.in_flight >= self.window or lane.breaker.blocks:
                found.append(lane.subscription_id)
        return found

    def parked(self) -> list[Lane]:
        return [lane for lane in self._lanes.values() if lane.parked]

    def breakers_not_closed(self) -> int:
        return sum(
            1 for lane in self._lanes.values() if lane.breaker.state is not BreakerState.CLOSED
        )

    def forget_idle(self) -> None:
        """Drop lanes with nothing to remember, so the map follows the live subscriptions."""
        cutoff = self._clock() - _IDLE_LANE_SECONDS
        for key, lane in list(self._lanes.items()):
            idle = lane.in_flight == 0 and not lane.parked and lane.used_at < cutoff
            if idle and lane.breaker.state is BreakerState.CLOSED:
                del self._lanes[key]

    def _report(self, lane: Lane, moved: BreakerState | None) -> None:
        if moved is None:
            return
        self._metrics.breaker_moved(moved.value)
        fields = {
            "subscription_id": lane.subscription_id,
            "tenant_id": lane.tenant_id,
            "state": moved.value,
            "consecutive_failures": lane.breaker.failures,
            "cooldown_seconds": self._cooldown,
        }
        if moved is BreakerState.OPEN:
            log.warning(names.EVENT_WEBHOOK_BREAKER, **fields)
        else:
            log.info(names.EVENT_WEBHOOK_BREAKER, **fields)
