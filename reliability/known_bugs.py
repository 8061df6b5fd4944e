"""Product bugs the scenarios found that are not fixed yet, so `make test` stays usable.

The report (docs/reliability.md) always shows such a scenario as FAIL with its causes. The
pytest wrappers (tests/reliability) mark a failed short run as an expected failure only when
every problem it found is one listed here (and the bug's telltale problem is among them); any
other problem fails the test. Delete an entry when its bug is fixed: the scenario must then pass.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from reliability.core import Row


@dataclass(frozen=True)
class KnownBug:
    summary: str
    telltale: str  # regex: a problem that shows this bug happened
    also: tuple[str, ...] = ()  # regexes: further problems the same bug causes

    def explains(self, problem: str) -> bool:
        return any(re.search(p, problem) for p in (self.telltale, *self.also))


# Empty: every bug the scenarios found so far is fixed (see `git log -- reliability/known_bugs.py`).
KNOWN: dict[str, tuple[KnownBug, ...]] = {}


def explain(scenario: str, row: Row) -> list[str] | None:
    """The known bugs behind a failed row, or None when any problem is not explained by them."""
    bugs = KNOWN.get(scenario, ())
    if row.passed or not bugs:
        return None
    if not all(any(bug.explains(p) for bug in bugs) for p in row.problems):
        return None
    seen = [bug for bug in bugs if any(re.search(bug.telltale, p) for p in row.problems)]
    # a problem matched only by a bug's secondary patterns, with no telltale, is not explained
    for problem in row.problems:
        if not any(bug.explains(problem) for bug in seen):
            return None
    return [bug.summary for bug in seen] or None


def found(rows: list[Row]) -> list[str]:
    """Every known bug whose telltale problem appears in a failed row of this run."""
    by_name = {bug.summary: bug for bugs in KNOWN.values() for bug in bugs}
    return [
        summary
        for summary, bug in by_name.items()
        if any(re.search(bug.telltale, p) for row in rows for p in row.problems)
    ]
