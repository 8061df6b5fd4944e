"""What every scenario shares: the scale it runs at and the row it reports."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

from mandate_vault_harness.net import wait_until

__all__ = ["Findings", "Row", "Scale", "stopwatch", "wait_until"]

T = TypeVar("T")


class Scale(StrEnum):
    """`short` runs inside `make test` (seconds per scenario); `full` only in `make reliability`."""

    SHORT = "short"
    FULL = "full"

    def pick(self, short: T, full: T) -> T:
        return short if self is Scale.SHORT else full


@dataclass
class Row:
    """One line of the report: what was tried, what was lost or leaked, and the verdict."""

    scenario: str
    tried: str
    lost_or_leaked: str
    passed: bool
    figures: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # why it failed, one line each

    def __str__(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        lines = [f"[{verdict}] {self.scenario}: {self.tried} -> {self.lost_or_leaked}"]
        lines += [f"    - {problem}" for problem in self.problems]
        return "\n".join(lines)


class Findings:
    """Collects failed expectations of a scenario; a scenario passes when none were found."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def check(self, ok: bool, problem: str) -> bool:
        if not ok:
            self.problems.append(problem)
        return ok

    @property
    def ok(self) -> bool:
        return not self.problems

    def row(self, scenario: str, tried: str, lost_or_leaked: str, figures: dict[str, Any]) -> Row:
        return Row(scenario, tried, lost_or_leaked, self.ok, figures, list(self.problems))


@contextmanager
def stopwatch() -> Iterator[Callable[[], float]]:
    started = time.monotonic()
    yield lambda: time.monotonic() - started
