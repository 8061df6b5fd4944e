"""One module per scenario, each with `NAME` and `run(scale) -> Row`, in report order."""

from __future__ import annotations

import importlib
from types import ModuleType

ORDER = (
    # faults
    "telemetry_blackhole",
    "broker_restart",
    "postgres_restart",
    "worker_sigkill",
    "slow_subscribers",
    "subscriber_outage",
    "verifier_down",
    "replicas",
    "overload",
    # attacks
    "hostile_jwts",
    "tenant_isolation",
    "schemathesis_fuzz",
    "rate_limits",
    "ssrf",
    "privacy",
)


def load(name: str) -> ModuleType:
    return importlib.import_module(f"reliability.scenarios.{name}")
