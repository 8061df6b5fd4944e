"""One module per scenario, each with `NAME` and `run(scale) -> Row`, in report order."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType

from reliability.core import Row, Scale

ORDER = (
    # faults
    "telemetry_blackhole",
    "broker_restart",
    "postgres_restart",
    "worker_sigkill",
    "verifier_down",
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


def runner(name: str) -> Callable[[Scale], Row]:
    run: Callable[[Scale], Row] = load(name).run
    return run
