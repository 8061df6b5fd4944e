"""Tells a consumer whose consumer-group state is broken from one that is merely idle or paused.

aiokafka retries group problems internally and forever, so a broken group looks exactly like a
quiet topic from outside: `getmany` keeps returning nothing. Two states are recognised, each on
a partition assigned to this member and not paused by the worker, for longer than
``WORKER_CONSUMER_STALL_SECONDS``:

- **no fetch progress**: no fetch answer for it in that time. The committed offset cannot be
  read (the coordinator keeps failing the offset fetch, e.g. its stored offsets are unreadable),
  or the broker is unreachable.
- **offsets past the log end**: the fetch position is beyond the partition's highwater mark. The
  broker lost the tail of its log but kept (or restored) the group's offsets; records written
  since then get offsets the consumer has already passed, and it would wait past them. (Apache
  Kafka answers such a fetch with OFFSET_OUT_OF_RANGE and the reset policy applies; the
  embedded broker answers with nothing.)

The consumer is then rebuilt; partitions whose committed offset could not be read, or pointed
past the log, start again from the beginning of the log. Committed offsets are only a hint: a
replayed event the delivery log already knows is dropped, and an event skipped anyway is found
by the api's reconciliation.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import IllegalStateError

_POSITION_WAIT_SECONDS = 0.01


class Broken(StrEnum):
    NO_FETCH_PROGRESS = "no_fetch_progress"
    OFFSETS_PAST_LOG_END = "offsets_past_log_end"
    UNEXPECTED_ERROR = "unexpected_error"  # the consumer loop failed (see consumer.run)


class BrokenGroupState(Exception):
    """Raised out of the poll loop: the consumer is rebuilt."""

    def __init__(self, reason: Broken, partitions: set[TopicPartition]) -> None:
        super().__init__(f"{reason.value}: {sorted(p.partition for p in partitions)}")
        self.reason = reason
        self.partitions = partitions  # to start again from the beginning of the log


@dataclass
class GroupWatch:
    stall_seconds: float
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    _fetching_since: dict[TopicPartition, float] = field(default_factory=dict)
    _ahead_since: dict[TopicPartition, float] = field(default_factory=dict)

    async def check(self, consumer: AIOKafkaConsumer) -> None:
        """Raise `BrokenGroupState` when a partition has been stuck for the stall period."""
        now = self.clock()
        assigned = consumer.assignment()
        paused = consumer.paused()
        for tracked in (self._fetching_since, self._ahead_since):
            for partition in [p for p in tracked if p not in assigned]:
                del tracked[partition]
        stalled: set[TopicPartition] = set()
        unknown: set[TopicPartition] = set()
        ahead: set[TopicPartition] = set()
        for partition in assigned:
            if partition in paused:  # the worker's window is full: no fetch is expected
                self._fetching_since[partition] = now
                continue
            try:
                position = await _position(consumer, partition)
                no_fetch = self._no_fetch(consumer, partition, now)
                past_end = self._past_log_end(consumer, partition, position, now)
            except (IllegalStateError, AssertionError):  # unassigned meanwhile (a rebalance)
                continue
            if position is None:
                unknown.add(partition)
            if no_fetch:
                stalled.add(partition)
            if past_end:
                ahead.add(partition)
        if ahead:
            raise BrokenGroupState(Broken.OFFSETS_PAST_LOG_END, ahead)
        if stalled:
            raise BrokenGroupState(Broken.NO_FETCH_PROGRESS, stalled & unknown)

    def _no_fetch(self, consumer: AIOKafkaConsumer, partition: TopicPartition, now: float) -> bool:
        since = self._fetching_since.setdefault(partition, now)
        polled_ms = consumer.last_poll_timestamp(partition)
        if polled_ms is not None and self.wall() - polled_ms / 1000 < self.stall_seconds:
            self._fetching_since[partition] = now
            return False
        return now - since > self.stall_seconds

    def _past_log_end(
        self, consumer: AIOKafkaConsumer, partition: TopicPartition, at: int | None, now: float
    ) -> bool:
        highwater = consumer.highwater(partition)
        if at is None or highwater is None or at <= highwater:
            self._ahead_since.pop(partition, None)
            return False
        return now - self._ahead_since.setdefault(partition, now) > self.stall_seconds


async def _position(consumer: Any, partition: TopicPartition) -> int | None:
    """The fetch position, or None while it is unknown (the committed offset not read yet)."""
    try:
        return int(await asyncio.wait_for(consumer.position(partition), _POSITION_WAIT_SECONDS))
    except TimeoutError:
        return None
