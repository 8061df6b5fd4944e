"""Production sampling in a real process: ~10 % of INFO lines, every WARNING line."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from mandate_vault_harness.services import ServiceProcess


def test_production_keeps_a_tenth_of_info_and_all_warnings(
    canary_service: Callable[..., ServiceProcess],
) -> None:
    process = canary_service({"ENVIRONMENT": "production", "LOG_LEVEL": "INFO"}).start()
    try:
        with httpx.Client(base_url=process.url) as client:
            for _ in range(400):
                client.post("/echo", json={"note": "n"})
    finally:
        process.stop()
    events = [record["event"] for record in process.json_logs()]
    assert events.count("canary_echo") == 400  # WARNING: never sampled
    # 400 draws at p=0.1: mean 40, sd 6; 15..75 is beyond 4 sd either way.
    assert 15 <= events.count("http_request") <= 75
