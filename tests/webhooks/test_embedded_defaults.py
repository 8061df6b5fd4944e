"""`make run`'s embedded defaults (SQLite file database, local broker): a slow subscriber still
never holds back another, and deliveries running concurrently beside concurrent creates never
fail on SQLite's database lock (the worker writes through one lane, in batches)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import pytest

from mandate_vault_harness.broker import Broker
from mandate_vault_harness.issuer import Issuer
from mandate_vault_harness.system import QUICK_API, QUICK_WORKER, System

TENANT = "acme-corp"
MANDATES = 60
WINDOW = 4


@pytest.fixture
def sqlite_stack(tmp_path: Path, broker: Broker, bank: Issuer) -> Iterator[System]:
    worker = {
        **QUICK_WORKER,
        "WORKER_SUBSCRIPTION_WINDOW": str(WINDOW),
        "WORKER_DELIVERY_TIMEOUT_SECONDS": "60",
        # the defaults of `make run`, not the quick ones of the other tests
        "WORKER_DB_POOL_SIZE": "10",
        "WORKER_RETRY_POLL_INTERVAL_SECONDS": "1",
    }
    with System(
        issuers=[bank],
        database_url=f"sqlite+aiosqlite:///{tmp_path}/mandate_vault.db",
        broker=broker,
        partitions=1,
        api_tuning=QUICK_API,
        worker_tuning=worker,
    ) as stack:
        stack.add_tenant(TENANT)
        stack.start_services()
        yield stack


def test_sqlite_isolation_and_no_lock_errors(sqlite_stack: System, bank: Issuer) -> None:
    stack = sqlite_stack
    tenant = stack.tenants[TENANT]
    gate = stack.receiver.hold("/slow")
    stack.subscribe(tenant, "/slow")
    stack.subscribe(tenant, "/fast")
    tokens = [bank.mandate() for _ in range(MANDATES)]
    try:
        with ThreadPoolExecutor(8) as pool:  # creates write while deliveries write
            created = [m["id"] for m in pool.map(partial(stack.create_mandate, tenant), tokens)]
        stack.receiver.wait_for(lambda r: len(r.at("/fast")) == MANDATES)
        assert all(d.answered_at is None for d in stack.receiver.at("/slow"))
    finally:
        gate.set()
    stack.receiver.wait_for(
        lambda r: len({d.webhook_id for d in r.at("/slow")}) == MANDATES, timeout=60
    )
    assert {json.loads(d.body)["data"]["id"] for d in stack.receiver.at("/slow")} == set(created)
    processes = [stack.api, *stack.workers]
    output = "\n".join(p.output() for p in processes)
    assert "database is locked" not in output
    problems = {
        r["event"]
        for p in processes
        for r in p.json_logs()
        if r["event"] in {"delivery_log_write_failed", "webhook_job_retrying", "consumer_failed"}
        or r.get("level") == "error"
    }
    assert not problems
