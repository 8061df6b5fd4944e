"""Run a service: settings, its one telemetry object, one uvicorn process (uvloop + httptools;
with admission control, httptools with refusals at the edge: `web/edge.py`)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Final, Literal, TypeVar

import uvicorn
from fastapi import FastAPI

from mandate_vault_shared.settings import ServiceSettings, load_settings
from mandate_vault_shared.telemetry import Telemetry, create_telemetry
from mandate_vault_shared.web.edge import edge_protocol

S = TypeVar("S", bound=ServiceSettings)

# Python's default runs a young collection every 700 net container allocations. A request
# allocates hundreds, so the api ran ~150 young collections a second under load, each walking
# what the requests in flight hold (~190 us apiece), and every 100th a full one: ~5 % of its CPU
# at capacity (gc.callbacks in one closed-loop + 200 % round: 1.15 s in 22 s). At 20,000 most of
# those objects are freed by reference counting before a collection sees them: 0.25 s in 44 s.
GC_YOUNG_THRESHOLD: Final = 20_000


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
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
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
