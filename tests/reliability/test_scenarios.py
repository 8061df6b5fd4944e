"""The short version of every `make reliability` scenario (reliability/scenarios), as a test.

Each starts the real services on real PostgreSQL and the broker, breaks or attacks them, and
must pass.
"""

from __future__ import annotations

import pytest
from reliability.core import Scale
from reliability.run import run_one
from reliability.scenarios import ORDER

# These judge latency (p99 against a healthy run, answers bounded by a timeout): they run alone,
# after the parallel tests, so a neighbour's load cannot decide them.
TIMED = {"telemetry_blackhole", "verifier_down", "replicas", "overload", "slow_subscribers"}
SCENARIOS = [pytest.param(s, marks=pytest.mark.serial) if s in TIMED else s for s in ORDER]


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_short_scenario(scenario: str) -> None:
    row, seconds = run_one(scenario, Scale.SHORT)
    print(f"\n{row}\n({seconds:.1f} s) {row.figures}")
    assert row.passed, str(row)
