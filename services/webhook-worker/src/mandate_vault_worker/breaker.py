"""A circuit breaker per subscription, in memory per worker.

closed --(``threshold`` consecutive failures or timeouts)--> open --(``cooldown``)--> half_open
half_open --(the one probe succeeds)--> closed;  half_open --(it fails)--> open again.

Any success closes it (a request that was in flight when it opened and then succeeds shows the
endpoint answers). While open, and while the half-open probe is in flight, the subscription's
jobs are parked in the delivery table instead of being sent. Time is a monotonic clock passed
in, so the breaker is plain state and tests drive it without sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass
class CircuitBreaker:
    threshold: int
    cooldown_seconds: float
    state: BreakerState = BreakerState.CLOSED
    failures: int = 0  # consecutive
    opened_at: float = 0.0
    probing: bool = False

    def refresh(self, now: float) -> BreakerState | None:
        """Move open -> half_open once the cooldown is over; returns the new state if it moved."""
        if self.state is BreakerState.OPEN and now >= self.reopens_at:
            self.state = BreakerState.HALF_OPEN
            self.probing = False
            return self.state
        return None

    @property
    def blocks(self) -> bool:
        """Nothing may be sent now (call `refresh` first)."""
        return self.state is BreakerState.OPEN or (
            self.state is BreakerState.HALF_OPEN and self.probing
        )

    @property
    def reopens_at(self) -> float:
        return self.opened_at + self.cooldown_seconds

    def take(self) -> None:
        """A request is about to be sent: in half_open it is the probe."""
        if self.state is BreakerState.HALF_OPEN:
            self.probing = True

    def abandon(self) -> None:
        """A request ended without telling anything about the endpoint (not sent, or a 410):
        if it was the probe, the next request may probe instead."""
        self.probing = False

    def record(self, ok: bool, now: float) -> BreakerState | None:
        """The outcome of a request; returns the new state if it moved."""
        if ok:
            self.failures = 0
            if self.state is BreakerState.CLOSED:
                return None
            self.state, self.probing = BreakerState.CLOSED, False
            return self.state
        self.failures += 1
        trips = self.state is BreakerState.HALF_OPEN or (
            self.state is BreakerState.CLOSED and self.failures >= self.threshold
        )
        if not trips:
            return None
        self.state, self.opened_at, self.probing = BreakerState.OPEN, now, False
        return self.state
