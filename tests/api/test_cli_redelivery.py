"""`mandate-vault deliveries ...` and `dead-letters ...` on the delivery rows the worker leaves
(inserted directly; the worker's side is tests/webhooks/test_redelivery.py)."""

from __future__ import annotations

import json
from datetime import timedelta

from tests.api.conftest import Api
from tests.api.helpers import cli, tenant_with_writer
from tests.api.test_redelivery import add_delivery, delivery, subscribe


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
