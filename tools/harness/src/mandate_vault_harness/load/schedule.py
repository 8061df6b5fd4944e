"""The one open-loop schedule behind every load shape of the harness.

Request *i* of a phase is due at the phase's start + i / rate whatever the answers to earlier
requests do (`due_times`): a slow server gets the same offered load and its latency counts from
the due time (no coordinated omission). Phases follow each other without a pause. The clock is
the event loop's (`time.monotonic()` under asyncio and uvloop). `paced` sends each request as
its own task when due; the lean generator (`openloop`) walks the same times from timer
callbacks, without a task a request.

While a schedule runs, the generator's own cyclic garbage collector makes no full collections:
the outcomes a long run keeps grow into hundreds of thousands of objects, and a full
collection over them paused the generator for up to 222 ms in a `make bench` sweep. A pause
stops sending (the service idles) and then sends the backlog at once (a burst it must refuse),
and every answer it delays counts as the service's latency. Young collections still run.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

BATCH_S: Final = 0.0005  # requests due within this are sent together
LEAD_S: Final = 0.05  # the first request is due this long after the schedule starts
_NEVER: Final = 1 << 30  # a threshold the oldest generation's count never reaches


@dataclass(frozen=True)
class Phase:
    name: str
    rate: float  # requests per second
    seconds: float

    @property
    def count(self) -> int:
        return max(0, int(self.rate * self.seconds + 1e-9))


# fire(phase index, request index in the whole run, seconds since the start, loop time it is due)
Fire = Callable[[int, int, float, float], Coroutine[Any, Any, None]]


class _FullCollections:
    """Holds the oldest generation's collections off while any schedule runs (schedules may run
    side by side in threads of one process); restores the thresholds when the last one ends."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders = 0
        self._saved = gc.get_threshold()

    @contextlib.contextmanager
    def held_off(self) -> Iterator[None]:
        with self._lock:
            if not self._holders:
                self._saved = gc.get_threshold()
                gc.set_threshold(self._saved[0], self._saved[1], _NEVER)
            self._holders += 1
        try:
            yield
        finally:
            with self._lock:
                self._holders -= 1
                if not self._holders:
                    gc.set_threshold(*self._saved)


_FULL_COLLECTIONS: Final = _FullCollections()


def full_collections_held_off() -> contextlib.AbstractContextManager[None]:
    """No full collection while this is held (by any schedule of the process)."""
    return _FULL_COLLECTIONS.held_off()


def due_times(phases: Sequence[Phase]) -> Iterator[tuple[int, int, float]]:
    """(phase index, request index in the whole run, seconds since the start it is due) of
    every request of `phases`, in order."""
    offset, index = 0.0, 0
    for number, phase in enumerate(phases):
        for n in range(phase.count):
            yield number, index, offset + n / phase.rate
            index += 1
        offset += phase.seconds


def phase_starts(phases: Sequence[Phase]) -> list[float]:
    """Seconds since the start at which each phase begins."""
    starts, offset = [], 0.0
    for phase in phases:
        starts.append(offset)
        offset += phase.seconds
    return starts


async def paced(
    phases: Sequence[Phase], fire: Fire, *, stop: Callable[[], bool] | None = None
) -> float:
    """Fire every request of `phases` when due (until `stop()` says so), wait for all of them,
    and return the seconds from the first due time to the last answer."""
    with full_collections_held_off():
        return await _paced(phases, fire, stop)


async def _paced(phases: Sequence[Phase], fire: Fire, stop: Callable[[], bool] | None) -> float:
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task[None]] = set()
    start = loop.time() + LEAD_S
    for number, index, at in due_times(phases):
        if stop is not None and stop():
            break
        delay = start + at - loop.time()
        if delay > BATCH_S:
            await asyncio.sleep(delay)
        task = loop.create_task(fire(number, index, at, start + at))
        pending.add(task)
        task.add_done_callback(pending.discard)
    await asyncio.gather(*pending)
    return loop.time() - start
