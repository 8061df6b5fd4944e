"""`make run`'s embedded defaults (SQLite file database, local broker): a slow subscriber still
never holds back another, and deliveries running concurrently beside concurrent creates never
fail on SQLite's database lock (the worker writes through one lane, in batches)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mandate_vault_harness.broker import Broker
from mandate_vault_harness.issuer import Issuer, truststore_json
from mandate_vault_harness.receiver import start_receiver
from mandate_vault_harness.services import ServiceProcess
from tests.webhooks.conftest import Stack, bootstrap

MANDATES = 60
WINDOW = 4


@pytest.fixture
async def sqlite_stack(tmp_path: Path, broker: Broker, bank: Issuer) -> AsyncIterator[Stack]:
    url = f"sqlite+aiosqlite:///{tmp_path}/mandate_vault.db"
    await bootstrap(url, bank.did)
    topic = f"embedded-{tmp_path.name[-8:]}"
    broker.create_topic(topic, 1)
    receiver, server = start_receiver()
    verifier = ServiceProcess(
        "jwt-verifier", {"VERIFIER_TRUSTSTORE_JSON": truststore_json(bank)}
    ).start()
    stack = Stack(url, broker, topic, verifier, receiver, None)
    stack.worker_overrides = {
        "WORKER_SUBSCRIPTION_WINDOW": str(WINDOW),
        "WORKER_DELIVERY_TIMEOUT_SECONDS": "60",
        # the defaults of `make run`, not the quick ones of the other tests
        "WORKER_DB_POOL_SIZE": "10",
        "WORKER_RETRY_POLL_INTERVAL_SECONDS": "1",
    }
    stack.start_api()
    stack.start_worker()
    yield stack
    stack.stop()
    verifier.stop()
    server.shutdown()


def test_sqlite_isolation_and_no_lock_errors(sqlite_stack: Stack, bank: Issuer) -> None:
    stack = sqlite_stack
    gate = stack.receiver.hold("/slow")
    stack.subscribe("/slow")
    stack.subscribe("/fast")
    tokens = [bank.mandate() for _ in range(MANDATES)]
    try:
        with ThreadPoolExecutor(8) as pool:  # creates write while deliveries write
            created = [m["id"] for m in pool.map(stack.create_mandate, tokens)]
        stack.receiver.wait_for(lambda r: len(r.at("/fast")) == MANDATES)
        assert all(d.answered_at is None for d in stack.receiver.at("/slow"))
    finally:
        gate.set()
    stack.receiver.wait_for(
        lambda r: len({d.webhook_id for d in r.at("/slow")}) == MANDATES, timeout=60
    )
    assert {json.loads(d.body)["data"]["id"] for d in stack.receiver.at("/slow")} == set(created)
    processes = [stack.api, *stack.workers]
    output = "\n".join(p.output() for p in processes if p is not None)
    assert "database is locked" not in output
    problems = {
        r["event"]
        for p in processes
        if p is not None
        for r in p.json_logs()
        if r["event"] in {"delivery_log_write_failed", "webhook_job_retrying", "consumer_failed"}
        or r.get("level") == "error"
    }
    assert not problems
