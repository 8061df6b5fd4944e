"""A collector that refuses or black-holes connections changes nothing for users; drops are counted."""

from __future__ import annotations

import httpx
import pytest

from mandate_vault_harness.metrics import scrape, value
from mandate_vault_harness.net import BlackHole, free_port
from mandate_vault_harness.services import ServiceProcess


@pytest.mark.parametrize("outage", ["black-holed", "refused"])
def test_requests_succeed_while_telemetry_is_dropped(outage: str) -> None:
    hole = BlackHole() if outage == "black-holed" else None
    port = hole.port if hole else free_port()
    process = ServiceProcess(
        "api",
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "1",
            "OTEL_BSP_MAX_QUEUE_SIZE": "20",
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "5",
            "OTEL_BSP_SCHEDULE_DELAY": "50",
        },
    ).start()
    try:
        with httpx.Client(base_url=process.url, timeout=5) as client:
            statuses = [client.get("/api/v1/info").status_code for _ in range(300)]
        samples = scrape(process.url)
    finally:
        process.stop()
        if hole:
            hole.close()
    assert statuses == [200] * 300
    dropped = value(samples, "telemetry_dropped_total", signal="traces")
    assert dropped > 0
    assert "Queue full" not in process.output()
