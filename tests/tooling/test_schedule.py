"""The open-loop schedule: every request when due, and no full collection of the generator's own
heap while it runs (a pause would stop sending, then burst, and count as the server's latency)."""

from __future__ import annotations

import asyncio
import gc
import threading

from mandate_vault_harness.load.schedule import Phase, paced


def test_every_request_is_fired_in_order_and_the_run_is_timed() -> None:
    fired: list[tuple[int, int]] = []

    async def fire(phase: int, index: int, _: float, __: float) -> None:
        fired.append((phase, index))

    elapsed = asyncio.run(paced([Phase("a", 200, 0.05), Phase("b", 100, 0.05)], fire))
    assert fired == [(0, i) for i in range(10)] + [(1, i) for i in range(10, 15)]
    assert elapsed > 0


def test_full_collections_are_held_off_while_any_schedule_runs() -> None:
    before = gc.get_threshold()
    seen: list[int] = []
    first_running, second_done = threading.Event(), threading.Event()

    async def first(*_: object) -> None:
        seen.append(gc.get_threshold()[2])
        first_running.set()
        await asyncio.to_thread(second_done.wait, 5)
        seen.append(gc.get_threshold()[2])  # the other schedule ended: still held off

    async def second(*_: object) -> None:
        seen.append(gc.get_threshold()[2])

    def run_second() -> None:
        first_running.wait(5)
        asyncio.run(paced([Phase("second", 100, 0.01)], second))
        second_done.set()

    other = threading.Thread(target=run_second)
    other.start()
    asyncio.run(paced([Phase("first", 100, 0.01)], first))
    other.join()
    assert len(seen) == 3
    assert all(threshold > 1_000_000 for threshold in seen)
    assert gc.get_threshold() == before
