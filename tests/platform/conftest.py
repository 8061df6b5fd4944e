"""Fixtures of the platform suite."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mandate_vault_harness.services import ServiceProcess

# A service on the shared skeleton that mishandles secrets on purpose (tests/platform/canary_app).
CANARY_APP = ("tests.platform.canary_app", "CANARY")


@pytest.fixture
def canary_service() -> Callable[..., ServiceProcess]:
    """Make (not start) a canary service process with the given environment."""

    def make(env: dict[str, str] | None = None) -> ServiceProcess:
        return ServiceProcess("canary", env, app=CANARY_APP)

    return make
