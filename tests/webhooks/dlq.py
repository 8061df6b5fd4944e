"""Read the dead-letter topic."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaConsumer

from mandate_vault_shared.kafka import header


async def dead_letters(
    bootstrap: str, topic: str, expected: int, wait_seconds: float = 20
) -> list[Any]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    found: list[Any] = []
    try:
        async with asyncio.timeout(wait_seconds):
            while len(found) < expected:
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    found += records
    except TimeoutError:
        pass
    finally:
        await consumer.stop()
    return found


def headers_of(record: Any) -> dict[str, str]:
    return {key: str(header(record.headers, key)) for key, _ in record.headers}
