"""The circuit breaker and the per-subscription window, driven by a fake clock (no sleeping)."""

from __future__ import annotations

from typing import Any

from mandate_vault_worker.breaker import BreakerState, CircuitBreaker
from mandate_vault_worker.lanes import Admission, Lanes


class _Metrics:
    def __init__(self) -> None:
        self.moves: list[str] = []

    def breaker_moved(self, state: str) -> None:
        self.moves.append(state)

    def observe_breakers(self, _: Any) -> None:
        pass


class _Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_consecutive_failures_only() -> None:
    breaker = CircuitBreaker(threshold=3, cooldown_seconds=10)
    for _ in range(2):
        assert breaker.record(False, 0) is None
    assert breaker.record(True, 0) is None  # a success resets the count
    for _ in range(2):
        breaker.record(False, 0)
    assert breaker.record(False, 1) is BreakerState.OPEN
    assert breaker.blocks
    assert breaker.refresh(10.9) is None
    assert breaker.refresh(11) is BreakerState.HALF_OPEN
    assert not breaker.blocks
    breaker.take()  # the probe
    assert breaker.blocks  # one probe at a time
    assert breaker.record(False, 12) is BreakerState.OPEN  # the probe failed: open again
    assert breaker.refresh(22) is BreakerState.HALF_OPEN
    breaker.take()
    assert breaker.record(True, 22.5) is BreakerState.CLOSED
    assert not breaker.blocks
    assert breaker.failures == 0


def test_lane_window_breaker_and_parked_backlog() -> None:
    clock, metrics = _Clock(), _Metrics()
    lanes = Lanes(window=2, threshold=2, cooldown_seconds=30, metrics=metrics, clock=clock)  # type: ignore[arg-type]
    freed: list[str] = []
    lanes.on_slot_freed = lambda lane: freed.append(lane.subscription_id)
    slow, other = lanes.lane("slow", "t1"), lanes.lane("other", "t2")

    assert lanes.admit(slow, from_table=False) is Admission.ADMITTED
    assert lanes.admit(slow, from_table=False) is Admission.ADMITTED
    assert lanes.admit(slow, from_table=False) is Admission.WINDOW_FULL  # window of 2
    assert lanes.admit(other, from_table=False) is Admission.ADMITTED  # never affected
    assert lanes.blocked() == ["slow"]

    slow.parked = True
    lanes.release(slow, True)
    assert freed == ["slow"]
    # Jobs from Kafka queue behind the parked ones; the poller (from the table) may pass.
    assert lanes.admit(slow, from_table=False) is Admission.WINDOW_FULL
    assert lanes.admit(slow, from_table=True) is Admission.ADMITTED
    slow.parked = False

    lanes.release(slow, False)
    lanes.release(slow, False)  # two consecutive failures: open
    assert metrics.moves == ["open"]
    assert lanes.admit(slow, from_table=True) is Admission.BREAKER_OPEN
    assert lanes.reopens_in(slow) == 30
    clock.now += 30
    assert lanes.admit(slow, from_table=True) is Admission.ADMITTED  # the half-open probe
    assert lanes.admit(slow, from_table=True) is Admission.BREAKER_OPEN  # only one
    lanes.release(slow, None)  # the probe was not sent (e.g. the subscription was deleted)
    assert lanes.admit(slow, from_table=True) is Admission.ADMITTED  # another probe may go
    lanes.release(slow, True)
    assert metrics.moves == ["open", "half_open", "closed"]
    assert lanes.breakers_not_closed() == 0
