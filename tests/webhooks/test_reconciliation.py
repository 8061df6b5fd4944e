"""End-to-end reconciliation: an event the broker acknowledged and lost is found in the database
and published again under the same webhook-id; nothing merely in flight, parked or not yet
consumed is.

Real PostgreSQL, the real embedded broker and a real webhook-worker process; the relay and the
reconciler run in the test's process so a pass can be driven at a chosen moment. The loss
itself is a test double (`AckAndDrop`): the embedded broker loses acknowledged records only when
it is SIGKILLed, and then at random (reliability/scenarios/broker_restart.py does that at full
scale).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from opentelemetry import trace
from pydantic import ValidationError
from sqlalchemy import func, select
from structlog.testing import capture_logs

from mandate_vault_api import directory, migrate
from mandate_vault_api.clock import utc_now
from mandate_vault_api.database import Database
from mandate_vault_api.reconcile import Reconciler
from mandate_vault_api.relay import OutboxRelay
from mandate_vault_api.settings import ApiSettings
from mandate_vault_api.webhooks import create_subscription, enqueue_event
from mandate_vault_harness.broker import Broker
from mandate_vault_harness.issuer import Issuer
from mandate_vault_harness.kafka import publishes_per_event
from mandate_vault_harness.receiver import Receiver, always, start_receiver
from mandate_vault_harness.services import ServiceProcess
from mandate_vault_harness.system import QUICK_WORKER, worker_wiring
from mandate_vault_shared.db.engine import create_engine
from mandate_vault_shared.db.schema import outbox, webhook_deliveries
from mandate_vault_shared.messages import EventType, WebhookJob
from mandate_vault_shared.producer import ManagedProducer
from mandate_vault_shared.telemetry import names
from mandate_vault_shared.telemetry.semconv import MessagingTelemetry
from mandate_vault_shared.webhooks import DEV_ENCRYPTION_KEY, SecretBox

TENANT = "acme-corp"
GRACE = 3.0  # above the test worker's delivery timeout (2 s), as the settings require


class AckAndDrop(AIOKafkaProducer):  # type: ignore[misc]
    """Test double of a broker that acknowledges records and then loses them: the first `drop`
    sends are answered as written and never reach the broker; the rest are real."""

    def __init__(self, drop: int, **options: Any) -> None:
        super().__init__(**options)
        self.to_drop = drop

    async def send(self, topic: str, value: bytes | None = None, **kwargs: Any) -> Any:
        if self.to_drop > 0:
            self.to_drop -= 1
            acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            acked.set_result(None)
            return acked
        return await super().send(topic, value, **kwargs)


@dataclass
class Replica:
    """One api replica's relay and reconciler, on its own database pool and producer."""

    db: Database
    relay: OutboxRelay
    reconciler: Reconciler
    reconciled: list[int] = field(default_factory=list)

    async def close(self) -> None:
        await self.relay.close()
        await self.db.close()


def replica(database_url: str, broker: Broker, topic: str, drop: int = 0) -> Replica:
    db = Database(create_engine(database_url))
    counts: list[int] = []
    producer = AckAndDrop(drop, bootstrap_servers=broker.bootstrap)
    relay = OutboxRelay(
        db, ManagedProducer(lambda: producer), MessagingTelemetry(trace.get_tracer("test")), topic, utc_now,
        batch_size=1, poll_interval=0.1,
    )  # fmt: skip
    reconciler = Reconciler(
        db, relay, utc_now, counts.append,
        grace=timedelta(seconds=GRACE), lookback=timedelta(hours=1), batch_size=4,
    )  # fmt: skip
    return Replica(db, relay, reconciler, counts)


@pytest.fixture
async def prepared(database_url: str, broker: Broker, topic: str, bank: Issuer) -> str:
    await asyncio.to_thread(migrate.upgrade, database_url)
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:  # the tenant the subscriptions belong to
            await directory.create_tenant(conn, TENANT, "Acme", utc_now())
            await directory.add_trusted_issuer(conn, TENANT, bank.did, utc_now())
    finally:
        await engine.dispose()
    broker.create_topic(topic, 2)
    return database_url


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found, server = start_receiver()
    yield found
    server.shutdown()


@contextlib.asynccontextmanager
async def worker(database_url: str, broker: Broker, topic: str, **env: str) -> AsyncIterator[None]:
    process = ServiceProcess(
        "webhook-worker",
        {**worker_wiring(database_url, broker.bootstrap, topic), **QUICK_WORKER, **env},
    )
    await asyncio.to_thread(process.start)
    try:
        yield
    finally:
        await asyncio.to_thread(process.stop)


async def subscribe(db: Database, receiver: Receiver, path: str, status: int = 204) -> str:
    values = {"url": receiver.url(path), "event_types": [EventType.MANDATE_CREATED]}
    async with db.transaction() as conn:
        subscription_id, secret = await create_subscription(
            conn, SecretBox(DEV_ENCRYPTION_KEY), TENANT, values, utc_now()
        )
    receiver.register(path, secret, always(status))
    return subscription_id


async def emit(db: Database) -> str:
    """One MandateCreated for the tenant's subscriptions; returns its event (webhook) id."""
    async with db.transaction() as conn:
        data = {"id": str(uuid.uuid4()), "version": 1}
        await enqueue_event(conn, TENANT, EventType.MANDATE_CREATED, data, utc_now())
        newest = select(func.max(outbox.c.id)).scalar_subquery()
        return str(await conn.scalar(select(outbox.c.event_id).where(outbox.c.id == newest)))


async def wait_for(receiver: Receiver, predicate: Callable[[Receiver], bool]) -> None:
    await asyncio.to_thread(receiver.wait_for, predicate, 30)


def webhook_ids(receiver: Receiver, path: str) -> list[str]:
    return sorted(r.webhook_id for r in receiver.at(path))


async def test_an_event_the_broker_acked_and_dropped_is_republished_and_delivered_once(
    prepared: str, broker: Broker, topic: str, receiver: Receiver
) -> None:
    api = replica(prepared, broker, topic, drop=1)
    try:
        async with worker(prepared, broker, topic):
            await subscribe(api.db, receiver, "/lost")
            lost, kept = await emit(api.db), await emit(api.db)
            assert await api.relay.publish_batch() == 1  # acknowledged, then lost
            assert await api.relay.publish_batch() == 1  # really published
            await wait_for(receiver, lambda r: len(r.at("/lost")) == 1)
            assert await api.reconciler.run_pass() == 0, "republished within the grace period"

            await asyncio.sleep(GRACE)
            with capture_logs() as logs:
                assert await api.reconciler.run_pass() == 1
            await wait_for(receiver, lambda r: len(r.at("/lost")) == 2)
            await asyncio.sleep(GRACE)  # recorded now: never published a third time
            assert await api.reconciler.run_pass() == 0
    finally:
        await api.close()
    assert webhook_ids(receiver, "/lost") == sorted([lost, kept])  # each once, under its id
    assert api.reconciled == [1]
    found = [e for e in logs if e["event"] == names.EVENT_WEBHOOK_RECONCILED]
    assert [(e["webhook_id"], e["tenant_id"]) for e in found] == [(lost, TENANT)]
    assert found[0]["published_seconds_ago"] >= GRACE
    assert not any(v for e in found for k, v in e.items() if "secret" in k)


async def test_in_flight_retrying_and_parked_events_are_not_republished(
    prepared: str, broker: Broker, topic: str, receiver: Receiver
) -> None:
    """An attempt held in flight (until the worker's 2 s timeout), then its retry scheduled a
    minute later, and a job parked behind the breaker that failure opened: each has a delivery
    row before its grace is over, so passes every 0.5 s for several grace periods leave them
    alone."""
    api = replica(prepared, broker, topic)
    gate = receiver.hold("/held")
    env = {
        "WORKER_BREAKER_FAILURE_THRESHOLD": "1",
        "WORKER_BREAKER_COOLDOWN_SECONDS": "120",
        "WORKER_RETRY_SCHEDULE_SECONDS": "60",
    }
    passes: list[int] = []

    async def reconcile_all_along() -> None:
        while True:
            passes.append(await api.reconciler.run_pass())
            await asyncio.sleep(0.5)

    try:
        async with worker(prepared, broker, topic, **env):
            await subscribe(api.db, receiver, "/held", status=503)
            reconciling = asyncio.create_task(reconcile_all_along())
            events = [await emit(api.db)]
            assert await api.relay.publish_batch() == 1
            await wait_for(receiver, lambda r: len(r.held("/held")) == 1)  # in flight
            await until_recorded(api.db, events[0])  # timed out: a retry in a minute
            events.append(await emit(api.db))
            assert await api.relay.publish_batch() == 1
            await until_recorded(api.db, events[1])  # parked: the breaker is open
            await asyncio.sleep(2 * GRACE)
            reconciling.cancel()
            states = await delivery_states(api.db, events)
    finally:
        gate.set()
        await api.close()
    assert len(passes) > 4 * GRACE, passes
    assert sum(passes) == 0, passes
    assert states[events[0]][0] == "retrying"  # the held attempt timed out
    assert states[events[1]] == ("retrying", "parked: breaker_open")
    counts = await asyncio.to_thread(publishes_per_event, broker.bootstrap, topic, events, 10.0)
    assert [counts[e] for e in events] == [1, 1]


async def test_a_backlog_the_worker_has_not_reached_is_not_republished(
    prepared: str, broker: Broker, topic: str, receiver: Receiver
) -> None:
    """No worker runs: nothing shows that the broker lost anything, so only the newest event
    goes out again (once per grace period, in case it was lost last before traffic stopped),
    on another partition than the first time."""
    api = replica(prepared, broker, topic)
    try:
        await subscribe(api.db, receiver, "/idle")
        events = [await emit(api.db) for _ in range(3)]
        for _ in events:
            assert await api.relay.publish_batch() == 1
        await asyncio.sleep(GRACE)
        assert await api.reconciler.run_pass() == 1
        assert await api.reconciler.run_pass() == 0
    finally:
        await api.close()
    copies = await partitions_of(broker, topic, events)
    assert [len(copies[e]) for e in events] == [1, 1, 2]
    assert len(set(copies[events[2]])) == 2, "the copy went to the partition that lost it"


async def test_two_replicas_reconciling_at_once_republish_each_lost_event_once(
    prepared: str, broker: Broker, topic: str, receiver: Receiver
) -> None:
    """Two replicas that both believe they lead (as around an election) run their passes
    concurrently, batch by batch: every lost event goes out again exactly once."""
    first, second = replica(prepared, broker, topic, drop=9), replica(prepared, broker, topic)
    try:
        await subscribe(first.db, receiver, "/twice")
        events = [await emit(first.db) for _ in range(10)]
        for _ in events:
            assert await first.relay.publish_batch() == 1  # 9 lost, the newest published
        await record_delivery(first.db, events[-1])  # the worker's progress
        await asyncio.sleep(GRACE)
        for _ in range(4):
            await asyncio.gather(first.reconciler.run_pass(), second.reconciler.run_pass())
    finally:
        await first.close()
        await second.close()
    counts = await asyncio.to_thread(publishes_per_event, broker.bootstrap, topic, events, 10.0)
    assert [counts[e] for e in events] == [1] * 10
    assert sum(first.reconciled) + sum(second.reconciled) == 9
    assert first.reconciled, "one replica did all the work: there was no race"
    assert second.reconciled, "one replica did all the work: there was no race"


async def partitions_of(broker: Broker, topic: str, events: list[str]) -> dict[str, list[int]]:
    """event id -> the partition of each of its messages on `topic`."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=broker.bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    found: dict[str, list[int]] = {event: [] for event in events}
    try:
        for _ in range(20):
            batches = await consumer.getmany(timeout_ms=250)
            for partition, records in batches.items():
                for record in records:
                    job = WebhookJob.decode(record.value)
                    found.setdefault(job.event_id, []).append(partition.partition)
    finally:
        await consumer.stop()
    return found


async def delivery_states(db: Database, events: list[str]) -> dict[str, tuple[str, str | None]]:
    """event id -> (status, last error) of its delivery-log row."""
    d = webhook_deliveries
    async with db.read() as conn:
        rows = await conn.execute(
            select(d.c.event_id, d.c.status, d.c.last_error).where(d.c.event_id.in_(events))
        )
        return {row.event_id: (row.status, row.last_error) for row in rows}


async def until_recorded(db: Database, event_id: str) -> None:
    for _ in range(200):
        if await delivery_states(db, [event_id]):
            return
        await asyncio.sleep(0.1)
    msg = f"the worker never recorded {event_id}"
    raise AssertionError(msg)


async def record_delivery(db: Database, event_id: str) -> None:
    """A delivery-log row as the worker writes it on first sight."""
    async with db.transaction() as conn:
        row = (await conn.execute(select(outbox).where(outbox.c.event_id == event_id))).one()
        await conn.execute(
            webhook_deliveries.insert().values(
                event_id=event_id, subscription_id=row.subscription_id, tenant_id=row.tenant_id,
                event_type=row.event_type, status="succeeded", attempts=1, payload=row.payload,
                created_at=utc_now(), updated_at=utc_now(),
            )
        )  # fmt: skip


async def test_reconciliation_runs_on_sqlite(
    sqlite_url: str, broker: Broker, topic: str, receiver: Receiver, bank: Issuer
) -> None:
    """`make run`'s database: the same queries (no row locks there: one process)."""
    broker.create_topic(topic, 1)
    api = replica(sqlite_url, broker, topic, drop=1)
    try:
        async with api.db.transaction() as conn:
            await directory.create_tenant(conn, TENANT, "Acme", utc_now())
        await subscribe(api.db, receiver, "/sqlite")
        lost, kept = await emit(api.db), await emit(api.db)
        for _ in range(2):
            assert await api.relay.publish_batch() == 1
        await record_delivery(api.db, kept)
        await asyncio.sleep(GRACE)
        assert await api.reconciler.run_pass() == 1
        assert await api.reconciler.run_pass() == 0
    finally:
        await api.close()
    counts = await asyncio.to_thread(publishes_per_event, broker.bootstrap, topic, [lost], 10.0)
    assert counts[lost] == 1


def test_a_lookback_shorter_than_the_grace_is_refused() -> None:
    with pytest.raises(ValidationError, match="API_OUTBOX_RECONCILE_LOOKBACK_SECONDS: must be"):
        ApiSettings(outbox_reconcile_grace_seconds=600, outbox_reconcile_lookback_seconds=60)
