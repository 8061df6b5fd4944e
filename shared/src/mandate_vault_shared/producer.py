"""One Kafka producer per process, owned by the lifespan and shared by whoever publishes.

It starts on first use, so a service comes up while the broker is down. A broker error drops it
(the caller sees the error) and the next use connects again: a producer that lost its broker is
never reused half-broken.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Self

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from mandate_vault_shared.kafka import KafkaSettings, producer_options

BROKER_ERRORS = (KafkaError, OSError)


class ManagedProducer:
    def __init__(self, factory: Callable[[], AIOKafkaProducer]) -> None:
        self._factory = factory
        self._producer: AIOKafkaProducer | None = None
        self._starting = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: KafkaSettings) -> Self:
        return cls(lambda: AIOKafkaProducer(**producer_options(settings)))

    @property
    def connected(self) -> bool:
        return self._producer is not None

    @contextlib.asynccontextmanager
    async def use(self) -> AsyncIterator[AIOKafkaProducer]:
        """The started producer; a broker error inside the block drops it and propagates."""
        producer = await self._started()
        try:
            yield producer
        except BROKER_ERRORS:
            await self.close()
            raise

    async def _started(self) -> AIOKafkaProducer:
        async with self._starting:
            if self._producer is None:
                producer = self._factory()
                try:
                    await producer.start()
                except BaseException:
                    await producer.stop()
                    raise
                self._producer = producer
            return self._producer

    async def close(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            with contextlib.suppress(*BROKER_ERRORS):
                await producer.stop()
