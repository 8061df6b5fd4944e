"""The consumer loop: fetch, hand over, commit finished prefixes. Thin on purpose.

It keeps fetching while deliveries are in flight and hands every batch to the `Dispatcher`
without waiting for it; while the worker's window is full it pauses its partitions (and keeps
polling, so it stays in the group). Offsets are committed in batches for the longest
fully-handled prefix of each partition (`offsets`), every ``WORKER_COMMIT_INTERVAL_SECONDS``,
when partitions are revoked in a rebalance, and when the worker stops: at-least-once, and a
crash replays only what had not finished. A record that cannot be decoded goes to the
dead-letter topic, so it never stalls the records behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Final

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from mandate_vault_shared.kafka import connection_options
from mandate_vault_shared.telemetry import get_logger, names
from mandate_vault_worker.dispatch import Dispatcher
from mandate_vault_worker.group_watch import Broken, BrokenGroupState, GroupWatch
from mandate_vault_worker.offsets import OffsetTracker
from mandate_vault_worker.settings import WorkerSettings

_RECONNECT_DELAY_SECONDS: Final = 1.0
_POLL_TIMEOUT_MS: Final = 500
_PAUSED_WAIT_SECONDS: Final = 0.5
_REVOKE_GRACE_SECONDS: Final = 2.0
_LAG_FETCH_SECONDS: Final = 5.0
_CLOSE_TIMEOUT_SECONDS: Final = 10.0  # leaving a group whose coordinator is broken may hang

log = get_logger(__name__)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: JobConsumer, consumer: AIOKafkaConsumer) -> None:
        self._owner = owner
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._owner.revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("partitions_assigned", partitions=sorted(p.partition for p in assigned))
        await self._owner.assigned(self._consumer, assigned)


class JobConsumer:
    def __init__(
        self,
        settings: WorkerSettings,
        dispatcher: Dispatcher,
        on_rebuilt: Callable[[str], None] = lambda _: None,
    ) -> None:
        self._settings = settings
        self._dispatcher = dispatcher
        self._on_rebuilt = on_rebuilt
        self._consumer: AIOKafkaConsumer | None = None
        self._offsets: OffsetTracker[TopicPartition] = OffsetTracker()
        self._stopping = asyncio.Event()
        self._watch = GroupWatch(settings.consumer_stall_seconds)
        # partitions to read from the beginning of the log when next assigned (after a rebuild)
        self._from_start: set[TopicPartition] = set()

    @property
    def connected(self) -> bool:
        return self._consumer is not None

    def _build(self) -> AIOKafkaConsumer:
        kafka = self._settings.kafka
        return AIOKafkaConsumer(
            **connection_options(kafka),
            group_id=self._settings.consumer_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=self._settings.session_timeout_ms,
            heartbeat_interval_ms=self._settings.heartbeat_interval_ms,
            max_poll_records=self._settings.max_poll_records,
            fetch_max_wait_ms=self._settings.fetch_max_wait_ms,
        )

    async def run(self) -> None:
        """Consume until `stop`, reconnecting when the broker goes away."""
        while not self._stopping.is_set():
            consumer = self._build()
            try:
                consumer.subscribe([self._settings.jobs_topic], listener=_Rebalance(self, consumer))
                await consumer.start()
                self._consumer = consumer
                log.info("consumer_started", topic=self._settings.jobs_topic)
                await self._poll(consumer)
            except BrokenGroupState as broken:
                self._rebuilding(broken)  # at once: the broker answers, the group state is bad
            except KafkaError as exc:
                log.warning("consumer_disconnected", error_type=type(exc).__name__)
                await self._pause_before_reconnect()
            except Exception as exc:
                # Anything else (a broker answering a malformed response after a crash made
                # aiokafka raise ValueError) must not end consumption for the process's life:
                # start over from the committed offsets.
                log.error("consumer_failed", error_type=type(exc).__name__, error=str(exc))
                self._rebuilding(BrokenGroupState(Broken.UNEXPECTED_ERROR, set()))
                await self._pause_before_reconnect()
            finally:
                self._consumer = None
                await self._close(consumer)

    def _rebuilding(self, broken: BrokenGroupState) -> None:
        self._from_start = broken.partitions
        self._on_rebuilt(broken.reason.value)
        log.warning(
            names.EVENT_KAFKA_CONSUMER_REBUILT,
            reason=broken.reason.value,
            topic=self._settings.jobs_topic,
            from_start=sorted(p.partition for p in broken.partitions),
        )

    async def _pause_before_reconnect(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), _RECONNECT_DELAY_SECONDS)

    async def _poll(self, consumer: AIOKafkaConsumer) -> None:
        committer = asyncio.create_task(self._commit_every(consumer))
        every = min(1.0, self._settings.consumer_stall_seconds / 4)
        checked = time.monotonic()
        try:
            while not self._stopping.is_set():
                await self._fetch(consumer)
                if time.monotonic() - checked >= every:
                    await self._watch.check(consumer)
                    checked = time.monotonic()
            # Stopping: let deliveries in flight finish for a moment, then commit what finished
            # (the rest is replayed by whoever consumes these partitions next).
            left = await self._dispatcher.drain(self._settings.shutdown_grace_seconds)
            await self._commit(consumer, None)
            log.info("consumer_stopped", unfinished_jobs=left)
        finally:
            committer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await committer

    async def _fetch(self, consumer: AIOKafkaConsumer) -> None:
        window = self._dispatcher.window
        if window.room() <= 0:
            consumer.pause(*consumer.assignment())
            await window.wait_for_room(_PAUSED_WAIT_SECONDS)
        if window.room() > 0 and consumer.paused():
            consumer.resume(*consumer.paused())
        # While paused this still polls (so the member stays in the group); whatever it returns
        # (a partition assigned meanwhile) is handled like any batch, never dropped.
        batches = await consumer.getmany(
            timeout_ms=_POLL_TIMEOUT_MS if window.room() > 0 else 0,
            max_records=max(min(window.room(), self._settings.max_poll_records), 1),
        )
        records = [record for partition_records in batches.values() for record in partition_records]
        if records:
            offsets = [
                self._offsets.partition(TopicPartition(r.topic, r.partition)) for r in records
            ]
            self._dispatcher.accept(records, offsets)

    async def _commit_every(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            await asyncio.sleep(self._settings.commit_interval_seconds)
            try:
                await self._commit(consumer, None)
            except Exception as exc:  # never let commits stop silently; the next round retries
                log.warning("commit_failed", error_type=type(exc).__name__, partitions=0)

    async def _commit(
        self, consumer: AIOKafkaConsumer, partitions: set[TopicPartition] | None
    ) -> None:
        commits = self._offsets.commits(partitions)
        if not commits:
            return
        try:
            await consumer.commit(commits)
        except (CommitFailedError, IllegalStateError, KafkaError) as exc:
            # A rebalance took the partitions (they replay from the last commit and the handlers
            # recognise what is done), or the broker is away: the next round tries again.
            log.warning("commit_failed", error_type=type(exc).__name__, partitions=len(commits))
            return
        self._offsets.committed(commits)

    async def revoked(self, partitions: set[TopicPartition]) -> None:
        """Before a rebalance moves partitions away: let their records in flight finish for a
        moment, commit what finished, and forget them."""
        consumer = self._consumer
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_REVOKE_GRACE_SECONDS):
                while self._offsets.in_flight(partitions):
                    await self._dispatcher.window.given()
        if consumer is not None:
            await self._commit(consumer, partitions)
        self._offsets.forget(partitions)

    async def assigned(self, consumer: AIOKafkaConsumer, partitions: set[TopicPartition]) -> None:
        """After a rebuild, partitions whose committed offsets were unreadable or pointed past
        the log start from the beginning (the delivery log drops what it already knows)."""
        restart, self._from_start = self._from_start & partitions, set()
        if restart:
            self._offsets.forget(restart)
            await consumer.seek_to_beginning(*restart)
            log.info("partitions_read_from_start", partitions=sorted(p.partition for p in restart))

    def stop(self) -> None:
        """Stop fetching; `run` returns once deliveries in flight finished (or the shutdown
        grace is over) and the finished offsets are committed."""
        self._stopping.set()

    async def _close(self, consumer: AIOKafkaConsumer) -> None:
        with contextlib.suppress(KafkaError, OSError, TimeoutError):
            await asyncio.wait_for(consumer.stop(), _CLOSE_TIMEOUT_SECONDS)
        self._offsets = OffsetTracker()
        self._watch = GroupWatch(self._settings.consumer_stall_seconds)

    async def measure_lag(self, lag: dict[tuple[str, int], int]) -> None:
        """Highwater minus committed offset for every partition this member owns."""
        consumer = self._consumer
        if consumer is None:
            return
        current: dict[tuple[str, int], int] = {}
        for partition in consumer.assignment():
            highwater = consumer.highwater(partition)
            try:  # aiokafka retries an offset fetch forever: a broken group must not hang this
                committed = await asyncio.wait_for(
                    consumer.committed(partition), _LAG_FETCH_SECONDS
                )
            except TimeoutError:
                continue
            if highwater is not None:
                current[(partition.topic, partition.partition)] = max(
                    highwater - (committed or 0), 0
                )
        lag.clear()
        lag.update(current)
