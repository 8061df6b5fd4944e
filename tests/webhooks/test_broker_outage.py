"""The broker is stopped while mandates are being created: every event arrives after it returns.

The broker here keeps its log and committed offsets in (local, moto) S3, like a real Kafka keeps
them on disk, so a restart is an outage rather than a wipe.
"""

from __future__ import annotations

import json
import time

import httpx

from mandate_vault_harness.issuer import Issuer
from mandate_vault_harness.system import QUICK_API, QUICK_WORKER, System


def test_events_created_during_a_broker_outage_are_all_delivered(bank: Issuer) -> None:
    with System(
        issuers=[bank], durable_broker=True, api_tuning=QUICK_API, worker_tuning=QUICK_WORKER
    ) as stack:
        assert stack.broker is not None
        assert stack.receiver is not None
        tenant = stack.add_tenant()
        stack.start_services()
        stack.subscribe(tenant, "/outage", ["MandateCreated"])
        created = [stack.create_mandate(tenant, bank.mandate())["id"] for _ in range(5)]
        stack.broker.stop()
        for _ in range(10):  # accepted while Kafka is down: they wait in the outbox
            created.append(stack.create_mandate(tenant, bank.mandate())["id"])
        time.sleep(2)
        ready = httpx.get(f"{stack.api.url}/readyz").json()
        assert ready["status"] == "ready"  # the api keeps serving; events are safe in the outbox
        stack.broker.start()
        for _ in range(5):
            created.append(stack.create_mandate(tenant, bank.mandate())["id"])
        receiver = stack.receiver

        def all_delivered(r: object) -> bool:
            got = {json.loads(d.body)["data"]["id"] for d in receiver.at("/outage")}
            return got >= set(created)

        receiver.wait_for(all_delivered, 90)
