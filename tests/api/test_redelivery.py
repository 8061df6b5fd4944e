"""Redelivery through the api: tenant-scoped, role-checked, idempotent, rate-limited, audited.

The worker is not running here: the delivery rows it would have written are inserted directly,
and the test reads what the api turned them into (the worker's side is tests/webhooks/).
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from mandate_vault_api.roles import Role
from mandate_vault_harness.inprocess import Api, running_api, tenant_with_writer
from mandate_vault_harness.net import free_port
from mandate_vault_harness.services import cli
from mandate_vault_shared.db.schema import webhook_deliveries, webhook_delivery_attempts
from mandate_vault_shared.webhooks import new_event_id


async def subscribe(api: Api, headers: dict[str, str], path: str = "/hook") -> str:
    response = await api.client.post(
        "/api/v1/webhooks",
        json={"url": f"http://127.0.0.1:9{path}", "event_types": ["MandateCreated"]},
        headers=headers,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def add_delivery(
    api: Api,
    tenant: str,
    subscription_id: str,
    status: str,
    created_at: datetime,
    attempts: int = 3,
) -> str:
    """A delivery row as the worker leaves it, with its attempts."""
    event_id = new_event_id()
    async with api.transaction() as conn:
        await conn.execute(
            webhook_deliveries.insert().values(
                event_id=event_id,
                subscription_id=subscription_id,
                tenant_id=tenant,
                event_type="MandateCreated",
                status=status,
                attempts=attempts,
                last_status_code=500 if status != "succeeded" else 204,
                last_error="HTTP 500" if status != "succeeded" else None,
                payload='{"type": "MandateCreated"}',
                created_at=created_at,
                updated_at=created_at,
            )
        )
        for attempt in range(1, attempts + 1):
            await conn.execute(
                webhook_delivery_attempts.insert().values(
                    id=str(uuid.uuid4()),
                    event_id=event_id,
                    subscription_id=subscription_id,
                    tenant_id=tenant,
                    attempt=attempt,
                    attempted_at=created_at + timedelta(seconds=attempt),
                    status_code=500,
                    latency_ms=12.5,
                    error="HTTP 500",
                    outcome="retrying" if attempt < attempts else status,
                    response_body='{"error": "token=[REDACTED]"}',
                    retry_after_seconds=2 if attempt == 1 else None,
                )
            )
    return event_id


async def delivery(api: Api, event_id: str) -> Any:
    async with api.transaction() as conn:
        query = select(webhook_deliveries).where(webhook_deliveries.c.event_id == event_id)
        return (await conn.execute(query)).one()


async def test_another_tenants_deliveries_are_not_found(api: Api) -> None:
    owner, owner_headers = await tenant_with_writer(api)
    subscription = await subscribe(api, owner_headers)
    event = await add_delivery(api, owner, subscription, "dead_lettered", api.clock())
    _, intruder = await tenant_with_writer(api)
    since = {"since": (api.clock() - timedelta(hours=1)).isoformat()}
    base = f"/api/v1/webhooks/{subscription}"
    answers = [
        await api.client.post(f"{base}/events/{event}/retry", headers=intruder),
        await api.client.post(f"{base}/recover", json=since, headers=intruder),
        await api.client.get(f"{base}/events/{event}/attempts", headers=intruder),
        await api.client.get(f"{base}/events", headers=intruder),
    ]
    assert [a.status_code for a in answers] == [404, 404, 404, 404]
    assert {a.json()["error"] for a in answers} == {"not_found"}
    assert (await delivery(api, event)).status == "dead_lettered"
    # Nor is an event of the owner's other subscription reachable under this one.
    other = await subscribe(api, owner_headers, "/other")
    mixed = await api.client.post(
        f"/api/v1/webhooks/{other}/events/{event}/retry", headers=owner_headers
    )
    assert mixed.status_code == 404


async def test_recover_refuses_a_time_in_the_future_or_malformed(api: Api) -> None:
    _, headers = await tenant_with_writer(api)
    subscription = await subscribe(api, headers)
    path = f"/api/v1/webhooks/{subscription}/recover"
    future = await api.client.post(
        path, json={"since": (api.clock() + timedelta(minutes=5)).isoformat()}, headers=headers
    )
    assert future.status_code == 422
    assert future.json()["error"] == "since_in_future"
    bad_times = (
        "yesterday",
        "2026-13-01T00:00:00Z",
        "2026-12-01T08:00:00",  # no offset
        "0001-01-01T00:00:00+14:00",  # before year 1 in UTC
        "",
        12,  # not taken for Unix seconds
    )
    for bad in bad_times:
        answer = await api.client.post(path, json={"since": bad}, headers=headers)
        assert answer.status_code == 422, bad
        body = answer.json()
        assert body["error"] == "validation_error"
        assert body["fields"][0]["loc"] == ["body", "since"]
        assert set(body) == {"error", "detail", "request_id", "fields"}
    unstorable = await api.client.post(
        f"/api/v1/webhooks/{subscription}/events/msg%00x/retry", headers=headers
    )
    assert unstorable.status_code == 422


async def test_retry_is_idempotent_and_audited(api: Api) -> None:
    tenant, headers = await tenant_with_writer(api)
    subscription = await subscribe(api, headers)
    event = await add_delivery(api, tenant, subscription, "dead_lettered", api.clock())
    path = f"/api/v1/webhooks/{subscription}/events/{event}/retry"
    first = await api.client.post(path, headers=headers)
    assert first.status_code == 202, first.text
    assert first.json() == {"event_id": event, "status": "retrying", "scheduled": True}
    row = await delivery(api, event)
    assert (row.status, row.redelivery, row.attempts) == ("retrying", "api:retry", 3)
    assert row.next_attempt_at is not None
    again = await api.client.post(path, headers=headers)
    assert again.status_code == 202
    assert again.json() == {"event_id": event, "status": "retrying", "scheduled": False}
    listed = await api.client.get(
        f"/api/v1/webhooks/{subscription}/events", params={"status": "retrying"}, headers=headers
    )
    assert [e["event_id"] for e in listed.json()] == [event]
    assert listed.json()[0]["redelivery"] == "api:retry"


async def test_recover_schedules_failed_and_dead_lettered_events_since_a_time(api: Api) -> None:
    tenant, headers = await tenant_with_writer(api)
    subscription = await subscribe(api, headers)
    now = api.clock()
    since = now - timedelta(hours=1)
    rows = {
        status: await add_delivery(api, tenant, subscription, status, since + timedelta(minutes=1))
        for status in ("failed", "dead_lettered", "succeeded", "retrying")
    }
    before = await add_delivery(api, tenant, subscription, "failed", since - timedelta(seconds=1))
    path = f"/api/v1/webhooks/{subscription}/recover"
    answer = await api.client.post(path, json={"since": since.isoformat()}, headers=headers)
    assert answer.status_code == 202, answer.text
    assert answer.json()["scheduled"] == 2
    states = {status: (await delivery(api, event)).redelivery for status, event in rows.items()}
    assert states == {
        "failed": "api:recover",
        "dead_lettered": "api:recover",
        "succeeded": None,
        "retrying": None,
    }
    assert (await delivery(api, before)).status == "failed"
    repeated = await api.client.post(path, json={"since": since.isoformat()}, headers=headers)
    assert repeated.json()["scheduled"] == 0


async def test_redelivery_needs_webhooks_write_and_reading_needs_webhooks_read(api: Api) -> None:
    tenant, admin = await tenant_with_writer(api)
    subscription = await subscribe(api, admin)
    event = await add_delivery(api, tenant, subscription, "failed", api.clock())
    base = f"/api/v1/webhooks/{subscription}"
    since = {"since": api.clock().isoformat()}
    for role in (Role.MEMBER, Role.READONLY):
        email = f"{role.value}@{tenant}.example"
        await api.add_user(tenant, email, role)
        headers = await api.login(email)
        retry = await api.client.post(f"{base}/events/{event}/retry", headers=headers)
        recover = await api.client.post(f"{base}/recover", json=since, headers=headers)
        assert (retry.status_code, recover.status_code) == (403, 403)
        assert retry.json()["error"] == "forbidden"
        attempts = await api.client.get(f"{base}/events/{event}/attempts", headers=headers)
        assert attempts.status_code == 200
    assert (await delivery(api, event)).status == "failed"


async def test_attempts_list_shows_what_the_endpoint_answered(api: Api) -> None:
    tenant, headers = await tenant_with_writer(api)
    subscription = await subscribe(api, headers)
    event = await add_delivery(api, tenant, subscription, "dead_lettered", api.clock())
    answer = await api.client.get(
        f"/api/v1/webhooks/{subscription}/events/{event}/attempts", headers=headers
    )
    assert answer.status_code == 200
    attempts = answer.json()
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    assert attempts[0]["response_body"] == '{"error": "token=[REDACTED]"}'
    assert attempts[0]["retry_after_seconds"] == 2
    assert attempts[1]["retry_after_seconds"] is None
    assert attempts[-1]["outcome"] == "dead_lettered"
    unknown = await api.client.get(
        f"/api/v1/webhooks/{subscription}/events/msg_unknown/attempts", headers=headers
    )
    assert unknown.status_code == 404


async def test_a_disabled_subscription_is_not_redelivered_until_enabled(api: Api) -> None:
    tenant, headers = await tenant_with_writer(api)
    subscription = await subscribe(api, headers)
    event = await add_delivery(api, tenant, subscription, "failed", api.clock())
    base = f"/api/v1/webhooks/{subscription}"
    await api.client.patch(base, json={"enabled": False}, headers=headers)
    refused = await api.client.post(f"{base}/events/{event}/retry", headers=headers)
    assert refused.status_code == 409
    assert refused.json()["error"] == "subscription_disabled"
    await api.client.patch(base, json={"enabled": True}, headers=headers)
    retried = await api.client.post(f"{base}/events/{event}/retry", headers=headers)
    assert retried.json()["scheduled"] is True


async def test_redelivery_is_rate_limited_per_tenant(database_url: str) -> None:
    verifier = f"http://127.0.0.1:{free_port()}"
    async with running_api(database_url, verifier, rate_limit_redelivery_per_minute=2) as api:
        _, headers = await tenant_with_writer(api)
        subscription = await subscribe(api, headers)
        path = f"/api/v1/webhooks/{subscription}/recover"
        since = {"since": api.clock().isoformat()}
        answers = [
            (await api.client.post(path, json=since, headers=headers)).status_code for _ in range(3)
        ]
        assert answers == [202, 202, 429]
        listing = await api.client.get(f"/api/v1/webhooks/{subscription}/events", headers=headers)
        assert listing.status_code == 200  # reading is not a redelivery
        metrics = (await api.client.get("/api/v1/metrics")).text
        assert 'rate_limited_total{scope="redelivery"} 1.0' in metrics


# --- the operator CLI on the same rows: `mandate-vault deliveries ...`, `dead-letters ...` ---


async def test_operators_list_and_redeliver_across_tenants(api: Api, database_url: str) -> None:
    tenant, headers = await tenant_with_writer(api)
    subscription = await subscribe(api, headers)
    start = api.clock() - timedelta(minutes=10)
    dead = await add_delivery(api, tenant, subscription, "dead_lettered", start)
    failed = await add_delivery(api, tenant, subscription, "failed", start + timedelta(minutes=1))
    done = await add_delivery(api, tenant, subscription, "succeeded", start + timedelta(minutes=2))

    listed = cli(database_url, "deliveries", "list", "--tenant", tenant, "--status", "failed")
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[0] for line in listed.stdout.splitlines()] == [failed]
    dead_letters = cli(database_url, "dead-letters", "list", "--subscription", subscription)
    assert [line.split()[0] for line in dead_letters.stdout.splitlines()] == [dead]
    attempts = cli(database_url, "deliveries", "attempts", dead)
    lines = attempts.stdout.splitlines()
    assert [line.split()[0] for line in lines if line.startswith("#")] == ["#1", "#2", "#3"]
    assert lines[0].endswith("retrying       HTTP 500  12.5 ms  retry-after=2s")
    assert 'body: "{\\"error\\": \\"token=[REDACTED]\\"}"' in attempts.stdout

    retried = cli(database_url, "deliveries", "retry", done, "msg_unknown")
    assert retried.stdout.splitlines() == [f"{done}: scheduled", "msg_unknown: not found"]
    assert (await delivery(api, done)).redelivery == "cli:retry"
    audit = json.loads(retried.stderr.splitlines()[-1])
    assert (audit["event"], audit["source"], audit["kind"]) == (
        "webhook_redelivery_requested",
        "cli",
        "retry",
    )
    assert audit["user_id"].startswith("operator:")
    recovered = cli(
        database_url,
        "deliveries", "recover", "--subscription", subscription, "--since", start.isoformat(),
    )  # fmt: skip
    assert (
        recovered.stdout.strip() == "2 failed or dead-lettered deliveries scheduled for redelivery"
    )
    again = cli(database_url, "dead-letters", "replay", "--all")
    assert again.stdout.strip() == "0 dead letters scheduled for redelivery"  # already scheduled
    assert (await delivery(api, dead)).redelivery == "cli:recover"


async def test_operator_mistakes_are_one_line_and_change_nothing(
    api: Api, database_url: str
) -> None:
    tenant, headers = await tenant_with_writer(api)
    subscription = await subscribe(api, headers)
    dead = await add_delivery(api, tenant, subscription, "dead_lettered", api.clock())
    future = (api.clock() + timedelta(hours=1)).isoformat()
    cases = [
        (("dead-letters", "replay"), "pass --all"),
        (("dead-letters", "replay", "--since", future), "in the future"),
        (
            ("deliveries", "recover", "--subscription", subscription, "--since", "2026-12-01"),
            "offset",
        ),
        (("deliveries", "list", "--since", "yesterday"), "not an ISO 8601 time"),
    ]
    for args, message in cases:
        result = cli(database_url, *args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert message in result.stderr, (args, result.stderr)
    assert (await delivery(api, dead)).status == "dead_lettered"
