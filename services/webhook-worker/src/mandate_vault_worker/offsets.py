"""Which offsets may be committed, when records of a partition finish out of order.

The worker handles many records of a partition at once, and they finish in any order. Kafka
keeps one committed offset per partition, meaning "everything before this is done", so only the
longest fully-handled prefix may be committed (the pattern of Confluent's Parallel Consumer): a
crash replays exactly the records that had not all finished before it, and nothing after a gap
is ever marked done. Commits are batched: the consumer asks for what moved every
``WORKER_COMMIT_INTERVAL_SECONDS`` and when partitions are revoked or the worker stops.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Generic, TypeVar

P = TypeVar("P")  # a partition (aiokafka's TopicPartition in the worker)


class PartitionOffsets:
    """Offsets of one partition: started in order, finished in any order."""

    def __init__(self) -> None:
        self._pending: deque[int] = deque()  # started and not yet part of the done prefix
        self._finished: set[int] = set()
        self._next: int | None = None  # the offset to commit: all before it are done
        self._committed: int | None = None
        self._last: int | None = None  # the highest offset started

    def start(self, offset: int) -> bool:
        """Record that `offset` is being handled; False when this partition's bookkeeping has
        seen it (or a later one) already: the record is in flight or done, so it must not be
        handled again (a re-fetch after the consumer's position moved back)."""
        if self._last is not None and offset <= self._last:
            return False
        self._pending.append(offset)
        self._last = offset
        return True

    def finished(self, offset: int) -> None:
        self._finished.add(offset)
        while self._pending and self._pending[0] in self._finished:
            done = self._pending.popleft()
            self._finished.discard(done)
            self._next = done + 1

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def committable(self) -> int | None:
        """The offset to commit now, or None when nothing new finished since the last commit."""
        if self._next is None or self._next == self._committed:
            return None
        return self._next

    def committed(self, offset: int) -> None:
        self._committed = offset


class OffsetTracker(Generic[P]):
    """`PartitionOffsets` for every partition this member consumes."""

    def __init__(self) -> None:
        self._partitions: dict[P, PartitionOffsets] = {}

    def partition(self, partition: P) -> PartitionOffsets:
        found = self._partitions.get(partition)
        if found is None:
            found = self._partitions[partition] = PartitionOffsets()
        return found

    def commits(self, partitions: Iterable[P] | None = None) -> dict[P, int]:
        """{partition: offset} for every partition whose finished prefix moved."""
        chosen = self._partitions if partitions is None else partitions
        found: dict[P, int] = {}
        for partition in chosen:
            offsets = self._partitions.get(partition)
            offset = offsets.committable() if offsets is not None else None
            if offset is not None:
                found[partition] = offset
        return found

    def committed(self, commits: dict[P, int]) -> None:
        for partition, offset in commits.items():
            if partition in self._partitions:
                self._partitions[partition].committed(offset)

    def in_flight(self, partitions: Iterable[P]) -> int:
        return sum(self._partitions[p].in_flight for p in partitions if p in self._partitions)

    def forget(self, partitions: Iterable[P]) -> None:
        """Partitions taken away: records still in flight finish into detached bookkeeping."""
        for partition in partitions:
            self._partitions.pop(partition, None)
