"""Run a service: settings, its one telemetry object, one uvicorn process (uvloop + httptools)."""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import TypeVar

import uvicorn
from fastapi import FastAPI

from mandate_vault_shared.settings import ServiceSettings, load_settings
from mandate_vault_shared.telemetry import Telemetry, create_telemetry

S = TypeVar("S", bound=ServiceSettings)


def package_version(distribution: str) -> str:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "0.0.0"


def run_service(
    *,
    service: str,
    distribution: str,
    settings_type: type[S],
    app_factory: Callable[[S, Telemetry], FastAPI],
) -> None:
    settings = load_settings(settings_type)
    telemetry = create_telemetry(service, package_version(distribution), settings)
    try:
        uvicorn.run(
            app_factory(settings, telemetry),
            host=settings.host,
            port=settings.port,
            loop="uvloop",
            http="httptools",
            log_config=None,
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=10,
        )
    finally:
        telemetry.shutdown()
