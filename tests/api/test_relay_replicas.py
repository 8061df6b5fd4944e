"""The outbox relay with two api replicas: every row published, at least once, no storms, and
the backlog drained by the survivor when the publishing replica is SIGKILLed mid-stream."""

from __future__ import annotations

import time

from mandate_vault_harness.kafka import publish_figures, publishes_per_event
from mandate_vault_harness.load import CreateLoad
from mandate_vault_harness.net import wait_until
from mandate_vault_harness.system import System, publishing_api


def test_two_replicas_publish_every_row_and_survive_the_publishers_death() -> None:
    with System(partitions=2) as system:
        for _ in range(2):
            system.start_api(wait=False, API_GAUGE_REFRESH_INTERVAL_SECONDS="0.2")
        system.ready()
        assert wait_until(lambda: publishing_api(system.apis) is not None, timeout=20)
        leader = publishing_api(system.apis)
        assert leader is not None
        tenant = system.add_tenant()
        system.subscribe(tenant, "/relay")
        issuer = system.issuers[0]
        load = CreateLoad(
            system.api.url,
            tenant.headers(),
            lambda _: issuer.mandate(),
            rps=40,
            count=160,
            urls=[api.url for api in system.apis],
        ).start()
        time.sleep(1.5)  # mid-stream: rows are being committed and published
        load.urls.remove(leader.url)  # the load balancer stops sending to it...
        system.kill_api(leader)  # ...as it dies, possibly between publish and mark
        answers = load.join(timeout=60)
        assert wait_until(
            lambda: system.scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0,
            timeout=30,
        ), "the survivor did not drain the backlog"
        events = [row["event_id"] for row in system.query("SELECT event_id FROM outbox")]
        assert system.broker is not None
        counts = publishes_per_event(system.broker.bootstrap, system.topic, events)

    figures = publish_figures(counts, events)
    print(f"\n{figures} answers={sorted({a.status for a in answers}, key=str)}")
    stored = sum(1 for a in answers if a.status == 201)
    assert len(events) >= stored > 100
    assert isinstance(figures["publishes_per_event_max"], int)
    assert figures["never_published"] == 0
    assert figures["publishes_per_event_max"] <= 2, "a row went out more than twice: a storm"
