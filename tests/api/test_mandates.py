"""The mandate API on real PostgreSQL with a real jwt-verifier process."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
from sqlalchemy import func, select

from mandate_vault_harness.inprocess import Api, running_api, tenant_with_writer
from mandate_vault_harness.issuer import Issuer
from mandate_vault_harness.net import free_port
from mandate_vault_harness.postgres import admin_dsn
from mandate_vault_harness.services import ServiceProcess
from mandate_vault_shared.db.schema import idempotency_keys, mandates


async def count_mandates(api: Api) -> int:
    async with api.transaction() as conn:
        return int(await conn.scalar(select(func.count()).select_from(mandates)) or 0)


async def test_create_valid_mandate(api: Api, bank: Issuer) -> None:
    tenant, headers = await tenant_with_writer(api, bank.did)
    token = bank.mandate(subject="did:example:alice", amount="125.5", currency="EUR")
    response = await api.client.post("/api/v1/mandates", json={"vc_jwt": token}, headers=headers)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "ACTIVE"
    assert body["verification_status"] == "VALID"
    assert body["tenant_id"] == tenant
    assert body["issuer"] == bank.did
    assert body["subject"] == "did:example:alice"
    assert body["scope"] == "payments.recurring"
    assert body["amount_limit"] == "125.50"
    assert body["currency"] == "EUR"
    assert body["key_id"] == bank.kid
    assert datetime.fromisoformat(body["expires_at"]) > datetime.now(UTC)
    assert "vc_jwt" not in body

    fetched = await api.client.get(f"/api/v1/mandates/{body['id']}", headers=headers)
    assert fetched.json() == body


async def test_failed_verification_is_stored_and_never_active(
    api: Api, bank: Issuer, other_bank: Issuer
) -> None:
    # other_bank is in the verifier's truststore but this tenant does not trust it.
    _, headers = await tenant_with_writer(api, bank.did)
    cases = {
        "ISSUER_UNKNOWN": other_bank.mandate(),
        "EXPIRED": bank.mandate(issued_at=datetime.now(UTC).timestamp() - 7200, expires_in=3600),
        "SIG_INVALID": bank.mandate()[:-6] + "AAAAAA",
        "INVALID_FORMAT": "not-a-jwt",
    }
    for expected, token in cases.items():
        response = await api.client.post(
            "/api/v1/mandates", json={"vc_jwt": token}, headers=headers
        )
        assert response.status_code == 201, response.text
        body = response.json()
        assert (body["status"], body["verification_status"]) == ("REJECTED", expected), body
        assert body["verification_reason"]
    listed = await api.client.get("/api/v1/mandates?status=REJECTED", headers=headers)
    assert len(listed.json()["items"]) == len(cases)
    assert (await api.client.get("/api/v1/mandates?status=ACTIVE", headers=headers)).json()[
        "items"
    ] == []


async def test_revoke_and_reverify(api: Api, bank: Issuer) -> None:
    _, headers = await tenant_with_writer(api, bank.did)
    created = (
        await api.client.post("/api/v1/mandates", json={"vc_jwt": bank.mandate()}, headers=headers)
    ).json()
    reverified = await api.client.post(f"/api/v1/mandates/{created['id']}/verify", headers=headers)
    assert reverified.status_code == 200
    assert reverified.json()["status"] == "ACTIVE"
    assert reverified.json()["verified_at"] >= created["verified_at"]

    revoked = await api.client.post(f"/api/v1/mandates/{created['id']}/revoke", headers=headers)
    assert revoked.json()["status"] == "REVOKED"
    assert revoked.json()["revoked_at"] is not None
    again = await api.client.post(f"/api/v1/mandates/{created['id']}/revoke", headers=headers)
    assert again.status_code == 200
    assert again.json()["revoked_at"] == revoked.json()["revoked_at"]
    # Re-verification never revives a revoked mandate.
    after = await api.client.post(f"/api/v1/mandates/{created['id']}/verify", headers=headers)
    assert after.json()["status"] == "REVOKED"


async def test_reverify_after_the_issuer_is_trusted_activates(api: Api, other_bank: Issuer) -> None:
    _, headers = await tenant_with_writer(api)
    created = (
        await api.client.post(
            "/api/v1/mandates", json={"vc_jwt": other_bank.mandate()}, headers=headers
        )
    ).json()
    assert created["verification_status"] == "ISSUER_UNKNOWN"
    added = await api.client.post(
        "/api/v1/trusted-issuers", json={"issuer": other_bank.did}, headers=headers
    )
    assert added.status_code == 201
    reverified = await api.client.post(f"/api/v1/mandates/{created['id']}/verify", headers=headers)
    assert (reverified.json()["status"], reverified.json()["verification_status"]) == (
        "ACTIVE",
        "VALID",
    )


async def test_expiry_sweep_marks_mandates_expired(api: Api, bank: Issuer) -> None:
    _, headers = await tenant_with_writer(api, bank.did)
    created = (
        await api.client.post(
            "/api/v1/mandates", json={"vc_jwt": bank.mandate(expires_in=120)}, headers=headers
        )
    ).json()
    api.clock.advance(180)  # past exp even when setting up took a while (exp is real time)
    # The sweep runs in the background: wait for it by state, generously (busy CI machines).
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        current = (
            await api.client.get(f"/api/v1/mandates/{created['id']}", headers=headers)
        ).json()
        if current["status"] == "EXPIRED" or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.1)
    assert current["status"] == "EXPIRED"
    conflict = await api.client.post(f"/api/v1/mandates/{created['id']}/revoke", headers=headers)
    assert conflict.status_code == 409
    assert conflict.json()["error"] == "mandate_expired"


async def test_idempotency_key_returns_the_first_result(api: Api, bank: Issuer) -> None:
    _, headers = await tenant_with_writer(api, bank.did)
    token = bank.mandate()
    keyed = {**headers, "Idempotency-Key": "order-42"}
    first = await api.client.post("/api/v1/mandates", json={"vc_jwt": token}, headers=keyed)
    second = await api.client.post("/api/v1/mandates", json={"vc_jwt": token}, headers=keyed)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    other = await api.client.post(
        "/api/v1/mandates", json={"vc_jwt": bank.mandate()}, headers=keyed
    )
    assert other.status_code == 409
    assert other.json()["error"] == "idempotency_key_reused"
    assert await count_mandates(api) == 1


async def test_concurrent_requests_with_one_key_store_one_mandate(api: Api, bank: Issuer) -> None:
    _, headers = await tenant_with_writer(api, bank.did)
    keyed = {**headers, "Idempotency-Key": "race-1"}
    token = bank.mandate()
    answers = await asyncio.gather(
        *(
            api.client.post("/api/v1/mandates", json={"vc_jwt": token}, headers=keyed)
            for _ in range(5)
        )
    )
    assert {a.status_code for a in answers} == {201}
    assert len({a.json()["id"] for a in answers}) == 1
    assert await count_mandates(api) == 1
    async with api.transaction() as conn:
        assert await conn.scalar(select(func.count()).select_from(idempotency_keys)) == 1


async def test_list_filters_and_cursor_pagination(api: Api, bank: Issuer) -> None:
    _, headers = await tenant_with_writer(api, bank.did)
    ids = []
    for n in range(7):
        api.clock.advance(1)
        subject = "did:example:even" if n % 2 == 0 else "did:example:odd"
        created = await api.client.post(
            "/api/v1/mandates", json={"vc_jwt": bank.mandate(subject=subject)}, headers=headers
        )
        ids.append(created.json()["id"])
    seen, cursor = [], None
    while True:
        query = "/api/v1/mandates?limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = (await api.client.get(query, headers=headers)).json()
        assert len(page["items"]) <= 3
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    odd = (await api.client.get("/api/v1/mandates?subject=did:example:odd", headers=headers)).json()
    assert len(odd["items"]) == 3
    issuer = await api.client.get(f"/api/v1/mandates?issuer={bank.did}&limit=1000", headers=headers)
    assert len(issuer.json()["items"]) == 7  # the page cap (200) is above 7
    window_start = (api.clock() - timedelta(seconds=2)).isoformat()
    recent = await api.client.get(
        "/api/v1/mandates", params={"created_after": window_start}, headers=headers
    )
    assert len(recent.json()["items"]) == 3
    bad = await api.client.get("/api/v1/mandates?cursor=%%%", headers=headers)
    assert bad.status_code == 400
    assert bad.json()["error"] == "invalid_cursor"


async def test_bad_input_gets_a_clear_4xx_and_stores_nothing(api: Api, bank: Issuer) -> None:
    tenant, headers = await tenant_with_writer(api, bank.did)
    cases = [
        ({}, 422),
        ({"vc_jwt": ""}, 422),
        ({"vc_jwt": 123}, 422),
        ({"vc_jwt": bank.mandate(), "tenant_id": "someone-else"}, 422),
        ({"vc_jwt": bank.mandate(), "status": "ACTIVE"}, 422),
        ({"vc_jwt": bank.mandate(), "verification_status": "VALID"}, 422),
        ({"vc_jwt": "e" * 17_000}, 413),
        ({"vc_jwt": bank.mandate() + "\x00"}, 422),
        ({"vc_jwt": "eyJ\u00e9.e30.x"}, 422),
    ]
    for body, status in cases:
        response = await api.client.post("/api/v1/mandates", json=body, headers=headers)
        assert response.status_code == status, (body, response.text)
        assert set(response.json()) >= {"error", "detail", "request_id"}
    raw = await api.client.post(
        "/api/v1/mandates",
        content=b"{not json",
        headers={**headers, "Content-Type": "application/json"},
    )
    assert raw.status_code == 422
    huge = await api.client.post(
        "/api/v1/mandates",
        content=b'{"vc_jwt": "' + b"a" * 100_000 + b'"}',
        headers={**headers, "Content-Type": "application/json"},
    )
    assert huge.status_code == 413
    assert huge.json()["error"] == "payload_too_large"
    assert await count_mandates(api) == 0
    assert tenant


async def test_text_the_database_cannot_store_is_refused_on_every_route(
    api: Api, bank: Issuer
) -> None:
    _, headers = await tenant_with_writer(api, bank.did)
    for name in ("billing\x00", "billing\udc00"):  # NUL; a lone surrogate (valid JSON escapes)
        body = orjson_body({"name": name, "role": "member"})
        response = await api.client.post(
            "/api/v1/api-keys",
            content=body,
            headers={**headers, "Content-Type": "application/json"},
        )
        assert response.status_code == 422, response.text
        assert response.json()["fields"][0]["loc"] == ["body", "name"]
    listed = await api.client.get("/api/v1/api-keys", headers=headers)
    assert listed.json() == []


def orjson_body(value: dict[str, str]) -> bytes:
    """JSON with lone surrogates escaped as \\uXXXX, as a hostile client would send them."""
    return json.dumps(value, ensure_ascii=True).encode()


async def test_verifier_down_answers_503_and_stores_nothing(
    database_url: str, bank: Issuer
) -> None:
    async with running_api(database_url, f"http://127.0.0.1:{free_port()}") as api:
        _, headers = await tenant_with_writer(api, bank.did)
        response = await api.client.post(
            "/api/v1/mandates", json={"vc_jwt": bank.mandate()}, headers=headers
        )
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "5"
        assert response.json()["error"] == "verifier_unavailable"
        assert await count_mandates(api) == 0


async def test_identifiers_too_long_to_store_are_rejected_not_a_500(api: Api, bank: Issuer) -> None:
    _, headers = await tenant_with_writer(api, bank.did)
    stranger = Issuer(did="did:web:" + "a" * 600 + ".example")
    untrusted = await api.client.post(
        "/api/v1/mandates", json={"vc_jwt": stranger.mandate()}, headers=headers
    )
    assert untrusted.status_code == 201, untrusted.text
    assert untrusted.json()["verification_status"] == "ISSUER_UNKNOWN"
    assert untrusted.json()["issuer"] is None  # too long to store; vc_jwt keeps it
    long_subject = bank.mandate(subject="did:example:" + "s" * 2000)
    response = await api.client.post(
        "/api/v1/mandates", json={"vc_jwt": long_subject}, headers=headers
    )
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "REJECTED"
    assert response.json()["verification_status"] == "CLAIMS_INVALID"


async def test_connections_killed_under_the_pool_are_503_then_replaced(
    database_url: str, verifier: ServiceProcess, bank: Issuer
) -> None:
    # Background loops off: a loop touching the dead connection first would discard it and
    # the create below would never meet it.
    quiet = {
        "gauge_refresh_interval_seconds": 3600,
        "expiry_sweep_interval_seconds": 3600,
        "outbox_poll_interval_seconds": 3600,
    }
    async with running_api(database_url, verifier.url, **quiet) as api:
        await _creates_after_the_kill(api, bank)


async def _creates_after_the_kill(api: Api, bank: Issuer) -> None:
    _, headers = await tenant_with_writer(api, bank.did)
    body = {"vc_jwt": bank.mandate()}
    first = await api.client.post("/api/v1/mandates", json=body, headers=headers)
    assert first.status_code == 201
    database = api.settings.database_url.rsplit("/", 1)[-1]
    connection = await asyncpg.connect(admin_dsn())
    try:
        await connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", database
        )
    finally:
        await connection.close()
    # Creates use the hot pool (asyncpg's, which notices a closed socket before reuse), reads
    # SQLAlchemy's (which does not ping): each answers 503 + Retry-After while it meets dead
    # connections, then recovers with fresh ones.
    creates = await _until_recovered(
        api,
        lambda: api.client.post(
            "/api/v1/mandates", json={"vc_jwt": bank.mandate()}, headers=headers
        ),
    )
    reads = await _until_recovered(api, lambda: api.client.get("/api/v1/mandates", headers=headers))
    assert reads[0] == 503, reads  # a dead connection was met, not skipped
    assert creates[-1] == 201, creates
    assert reads[-1] == 200, reads


async def _until_recovered(api: Api, call: Callable[[], Awaitable[httpx.Response]]) -> list[int]:
    outcomes = []
    for _ in range(api.settings.db_pool_size + 1):
        response = await call()
        outcomes.append(response.status_code)
        if response.status_code < 300:
            break
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"]
    return outcomes
