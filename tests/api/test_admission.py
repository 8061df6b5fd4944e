"""Admission control in the api: a stalled verifier, a full queue and a login storm.

Behaviour, not timings: how many requests were admitted and refused, what the refusals look
like, what was stored, and that probes keep answering.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from mandate_vault_api.roles import Role
from mandate_vault_harness.inprocess import Api, running_api, tenant_with_writer
from mandate_vault_harness.issuer import Issuer, truststore_json
from mandate_vault_harness.services import ServiceProcess
from mandate_vault_harness.system import PASSWORD
from mandate_vault_shared.db.schema import idempotency_keys, mandates, outbox
from mandate_vault_shared.web.admission import BudgetSettings

ADMITTED = 4  # the create budget: exactly this many may be in flight
PROBES = ("/healthz", "/readyz", "/api/v1/metrics")


@pytest.fixture
def own_verifier(bank: Issuer) -> Iterator[ServiceProcess]:
    """A verifier this test may freeze without disturbing the others."""
    process = ServiceProcess("jwt-verifier", {"VERIFIER_TRUSTSTORE_JSON": truststore_json(bank)})
    yield process.start()
    process.stop()


@contextmanager
def frozen(process: ServiceProcess) -> Iterator[None]:
    """The process accepts connections but never answers (SIGSTOP)."""
    assert process.pid is not None
    os.kill(process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(process.pid, signal.SIGCONT)


async def stored(api: Api, tenant: str) -> tuple[int, int, int]:
    async with api.transaction() as conn:
        counts = []
        for table in (mandates, outbox, idempotency_keys):
            query = select(func.count()).select_from(table).where(table.c.tenant_id == tenant)
            counts.append(int(await conn.scalar(query) or 0))
    return counts[0], counts[1], counts[2]


async def shed_counts(api: Api) -> dict[str, float]:
    text = (await api.client.get("/api/v1/metrics")).text
    return {
        sample.labels["reason"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "requests_shed_total"
        and sample.labels.get("endpoint") == "/api/v1/mandates"
    }


async def create_503s(api: Api) -> float:
    """``http_requests_total`` of creates answered 503 (refusals are counted like any answer)."""
    text = (await api.client.get("/api/v1/metrics")).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "http_requests_total"
        and sample.labels.get("endpoint") == "/api/v1/mandates"
        and sample.labels.get("status_code") == "503"
    )


@pytest.fixture
async def guarded_api(database_url: str, own_verifier: ServiceProcess) -> AsyncIterator[Api]:
    budget = BudgetSettings(
        max_concurrency=ADMITTED, min_concurrency=ADMITTED, queue_size=8, queue_timeout_ms=200
    )
    async with running_api(
        database_url,
        own_verifier.url,
        admission=budget,
        verifier_timeout_seconds=1.0,
        login_admission=BudgetSettings(max_concurrency=1, queue_size=0),
    ) as api:
        yield api


async def test_a_stalled_verifier_holds_only_the_budget_the_rest_is_refused_at_once(
    guarded_api: Api, own_verifier: ServiceProcess, bank: Issuer
) -> None:
    api = guarded_api
    tenant, headers = await tenant_with_writer(api, bank.did)
    before, shed_before = await stored(api, tenant), await shed_counts(api)
    answered_503_before = await create_503s(api)
    with frozen(own_verifier):
        creates = [
            asyncio.create_task(
                api.client.post(
                    "/api/v1/mandates",
                    json={"vc_jwt": bank.mandate()},
                    headers={**headers, "Idempotency-Key": f"key-{n}"},
                )
            )
            for n in range(20)
        ]
        await asyncio.sleep(0.05)
        probes = [(await api.client.get(path)).status_code for path in PROBES]
        answers = await asyncio.gather(*creates)
    errors = [a.json()["error"] for a in answers]
    assert all(a.status_code == 503 and a.headers["Retry-After"] for a in answers)
    # Admitted: they reached the stalled verifier and met its timeout. Nothing else did.
    assert errors.count("verifier_unavailable") == ADMITTED
    assert errors.count("overloaded") == 20 - ADMITTED
    refused_answer = next(a for a in answers if a.json()["error"] == "overloaded")
    refusal = refused_answer.json()
    assert set(refusal) == {"error", "detail", "request_id"}
    assert refusal["request_id"] == refused_answer.headers["X-Request-Id"]
    assert await create_503s(api) - answered_503_before == 20
    assert probes == [200, 200, 200]
    assert await stored(api, tenant) == before  # nothing stored, nothing half-written
    shed = await shed_counts(api)
    refused = {reason: shed.get(reason, 0) - shed_before.get(reason, 0) for reason in shed}
    assert sum(refused.values()) == 20 - ADMITTED
    assert refused.get("queue_full", 0) + refused.get("deadline", 0) == 20 - ADMITTED
    # The verifier answers again: so does the api.
    ok = await api.client.post("/api/v1/mandates", json={"vc_jwt": bank.mandate()}, headers=headers)
    assert ok.status_code == 201


async def test_a_login_storm_cannot_starve_creation(guarded_api: Api, bank: Issuer) -> None:
    api = guarded_api
    tenant, headers = await tenant_with_writer(api, bank.did)
    email = f"storm@{tenant}.example"
    await api.add_user(tenant, email, Role.MEMBER)
    credentials = {"email": email, "password": PASSWORD}
    logins = [
        asyncio.create_task(api.client.post("/api/v1/auth/login", json=credentials))
        for _ in range(12)
    ]
    creates = [
        asyncio.create_task(
            api.client.post("/api/v1/mandates", json={"vc_jwt": bank.mandate()}, headers=headers)
        )
        for _ in range(ADMITTED)
    ]
    created = [c.status_code for c in await asyncio.gather(*creates)]
    logged_in = [r.status_code for r in await asyncio.gather(*logins)]
    assert created == [201] * ADMITTED
    assert 200 in logged_in
    assert set(logged_in) <= {200, 503}  # the login budget (one at a time) refused the rest
    assert logged_in.count(503) >= 1
