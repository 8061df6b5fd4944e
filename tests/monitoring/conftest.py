"""Fixtures of the monitoring suite: real Prometheus and Alertmanager (the harness's
`Monitoring`) next to the real services (the harness's `System`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mandate_vault_harness.prometheus import Monitoring


@pytest.fixture(scope="module")
def monitoring(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Monitoring]:
    instance = Monitoring(tmp_path_factory.mktemp("monitoring"))
    try:
        yield instance.start()
    finally:
        instance.stop()
