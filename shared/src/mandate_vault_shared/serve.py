"""Run a service: settings, its one telemetry object, one uvicorn process (uvloop + httptools;
with admission control, httptools with refusals at the edge: `web/edge.py`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Literal, TypeVar

import uvicorn
from fastapi import FastAPI

from mandate_vault_shared.settings import ServiceSettings, load_settings
from mandate_vault_shared.telemetry import Telemetry, create_telemetry
from mandate_vault_shared.web.edge import edge_protocol

S = TypeVar("S", bound=ServiceSettings)


def package_version(distribution: str) -> str:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "0.0.0"


def http_protocol(app: FastAPI) -> type[asyncio.Protocol] | Literal["httptools"]:
    """httptools; with admission control, httptools answering refusals at the edge."""
    admission = getattr(app.state, "admission", None)
    return "httptools" if admission is None else edge_protocol(admission)


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
        app = app_factory(settings, telemetry)
        uvicorn.run(
            app,
            host=settings.host,
            port=settings.port,
            loop="uvloop",
            http=http_protocol(app),
            log_config=None,
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=10,
        )
    finally:
        telemetry.shutdown()
