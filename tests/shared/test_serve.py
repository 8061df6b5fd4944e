"""`serve.run_service`: what it sets up for the process before uvicorn runs the app."""

from __future__ import annotations

import gc
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from pydantic_settings import SettingsConfigDict

from mandate_vault_shared import serve
from mandate_vault_shared.settings import ServiceSettings
from mandate_vault_shared.telemetry import Telemetry


class _Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SERVE_TEST_", extra="ignore")


def test_young_collections_are_rarer_while_the_service_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: dict[str, Any] = {}

    def run(app: FastAPI, **options: Any) -> None:
        seen["threshold"] = gc.get_threshold()
        seen["http"] = options["http"]

    def app_factory(_: _Settings, __: Telemetry) -> FastAPI:
        return FastAPI()

    before = gc.get_threshold()
    monkeypatch.setattr(uvicorn, "run", run)
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    try:
        serve.run_service(
            service="serve-test",
            distribution="none",
            settings_type=_Settings,
            app_factory=app_factory,
        )
    finally:
        gc.set_threshold(*before)
    assert seen["threshold"] == (serve.GC_YOUNG_THRESHOLD, *before[1:])
    assert seen["http"] == "httptools"  # no admission control: plain httptools
