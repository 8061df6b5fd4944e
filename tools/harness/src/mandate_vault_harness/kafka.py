"""What the relay actually published: every message of a topic, read back from the beginning,
counted per outbox event (publishes per event: 1 is ideal, more are at-least-once duplicates)."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Collection

from aiokafka import AIOKafkaConsumer


def publishes_per_event(
    bootstrap: str, topic: str, expected: Collection[str], timeout: float = 30.0
) -> Counter[str]:
    """event_id -> messages on `topic`; reads until every `expected` id was seen and the topic
    has been quiet for a second (or `timeout`)."""
    return asyncio.run(_count(bootstrap, topic, set(expected), timeout))


async def _count(bootstrap: str, topic: str, expected: set[str], patience: float) -> Counter[str]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    counts: Counter[str] = Counter()
    await consumer.start()
    try:
        deadline = time.monotonic() + patience
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200, max_records=1000)
            records = [record for batch in batches.values() for record in batch]
            for record in records:
                counts[json.loads(record.value)["event_id"]] += 1
            if records:
                quiet_since = time.monotonic()
            elif expected <= counts.keys() and time.monotonic() - quiet_since > 1.0:
                break
    finally:
        await consumer.stop()
    return counts


def publish_figures(counts: Counter[str], expected: Collection[str]) -> dict[str, object]:
    """Mean and max publishes per expected event, and how many were never published."""
    per_event = [counts.get(event_id, 0) for event_id in expected]
    published = [n for n in per_event if n > 0]
    return {
        "events": len(per_event),
        "never_published": sum(1 for n in per_event if n == 0),
        "publishes_per_event_mean": round(sum(published) / len(published), 4) if published else 0,
        "publishes_per_event_max": max(published, default=0),
    }
