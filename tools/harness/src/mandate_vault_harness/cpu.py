"""CPU time of processes from /proc, for "CPU ms per operation" figures.

CPU per operation is far less sensitive to a noisy neighbour than requests per second: a
process that waits for the CPU does not accumulate CPU time while it waits.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of `pid` so far."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0, 0.0
    return int(fields[11]) / _TICKS, int(fields[12]) / _TICKS


def cpu_seconds(pid: int) -> float:
    """User + system CPU of `pid` (all its threads) so far; 0.0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    # after "pid (comm)": state is field 0, utime field 11, stime field 12
    return (int(fields[11]) + int(fields[12])) / _TICKS


@dataclass
class CpuMeter:
    """CPU used by named groups of processes between `start()` and `stop()`.

    A group is a callable returning its pids now (e.g. the PostgreSQL backends serving one
    database): pids that appear during the run count from zero, pids that vanish keep what
    they had when last seen."""

    groups: dict[str, Callable[[], Iterable[int]]]
    _start: dict[str, dict[int, float]] = field(default_factory=dict)

    def start(self) -> CpuMeter:
        self._start = {
            name: {pid: cpu_seconds(pid) for pid in pids()} for name, pids in self.groups.items()
        }
        return self

    def stop(self) -> dict[str, float]:
        """Seconds of CPU per group since `start()`."""
        used: dict[str, float] = {}
        for name, pids in self.groups.items():
            before = self._start.get(name, {})
            now = {pid: cpu_seconds(pid) for pid in set(pids()) | set(before)}
            used[name] = sum(max(now[pid] - before.get(pid, 0.0), 0.0) for pid in now)
        return used


def pin(pid: int, cores: set[int]) -> None:
    """Run every thread of `pid` (``0``: this process) on `cores` only; a thread it starts later
    inherits its creator's. A process that is gone is skipped."""
    tasks = Path(f"/proc/{pid or os.getpid()}/task")
    try:
        threads = [int(task.name) for task in tasks.iterdir()]
    except FileNotFoundError:
        return
    for thread in threads:
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(thread, cores)


@contextmanager
def split_cores(system_pids: Iterable[int]) -> Iterator[bool]:
    """The system under test (`system_pids`) on every core but the last, this process - the
    load generator, and anything it starts, such as wrk - on the last, so the generator's own
    CPU does not come out of the system's; all back on every core afterwards. Yields False (and
    pins nothing) on a single core."""
    cores = os.sched_getaffinity(0)
    if len(cores) < 2:
        yield False
        return
    generator = {max(cores)}
    pids = list(system_pids)
    for pid in pids:
        pin(pid, cores - generator)
    pin(0, generator)
    try:
        yield True
    finally:
        for pid in [0, *pids]:
            pin(pid, cores)
