"""Background work repeated on an interval for a process's whole life (the lifespan cancels it).

A failing round is logged (`background_job_failed`) and the next round tries again: one bad
round never ends the loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from mandate_vault_shared.telemetry import get_logger

log = get_logger(__name__)


def _always() -> bool:
    return True


async def every(
    seconds: float,
    name: str,
    job: Callable[[], Awaitable[object]],
    *,
    when: Callable[[], bool] = _always,
) -> None:
    """Run `job` every `seconds`, in the rounds where `when()` holds."""
    while True:
        if when():
            try:
                await job()
            except Exception as exc:
                log.warning("background_job_failed", job=name, error_type=type(exc).__name__)
        await asyncio.sleep(seconds)
