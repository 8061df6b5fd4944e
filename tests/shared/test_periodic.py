"""The one periodic-loop helper: runs on its interval, only in rounds its condition allows,
and outlives a failing round."""

from __future__ import annotations

import asyncio

import structlog.testing

from mandate_vault_shared.periodic import every


async def test_runs_each_round_and_survives_a_failing_one() -> None:
    calls = 0
    fourth = asyncio.Event()

    async def job() -> None:
        nonlocal calls
        calls += 1
        if calls == 4:
            fourth.set()
        if calls == 2:
            raise RuntimeError("one bad round")

    with structlog.testing.capture_logs() as logs:
        task = asyncio.create_task(every(0.01, "sample", job))
        await asyncio.wait_for(fourth.wait(), 5)
        task.cancel()
    failures = [e for e in logs if e["event"] == "background_job_failed"]
    assert [(e["job"], e["error_type"], e["log_level"]) for e in failures] == [
        ("sample", "RuntimeError", "warning")
    ]


async def test_skips_rounds_while_its_condition_is_false() -> None:
    leading = False
    ran = asyncio.Event()

    async def job() -> None:
        ran.set()

    task = asyncio.create_task(every(0.01, "sample", job, when=lambda: leading))
    await asyncio.sleep(0.1)
    assert not ran.is_set()
    leading = True
    await asyncio.wait_for(ran.wait(), 5)
    task.cancel()
