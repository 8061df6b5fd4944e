"""Revocations reach the other replica through PostgreSQL LISTEN/NOTIFY, not the cache TTL.

Two real api processes share one database with a 60-second auth cache: each check warms the
cache on replica B, makes the change on replica A, and expects B to refuse within seconds -
far inside the TTL, so only the invalidation channel can explain it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from mandate_vault_api.roles import Role
from mandate_vault_harness.metrics import scrape, value
from mandate_vault_harness.net import wait_until
from mandate_vault_harness.receiver import always
from mandate_vault_harness.services import ServiceProcess
from mandate_vault_harness.system import PASSWORD, System, Tenant
from mandate_vault_shared.invalidation import APPLICATION_NAME

CACHE_SECONDS = 60.0
PATIENCE = 10.0  # well inside the TTL


@pytest.fixture(scope="module")
def system() -> Iterator[System]:
    with System(broker=False) as instance:
        for _ in range(2):
            instance.start_api(wait=False, API_AUTH_CACHE_SECONDS=str(CACHE_SECONDS))
        instance.ready()
        yield instance


@pytest.fixture
def tenant(system: System) -> Tenant:
    return system.add_tenant(roles=(Role.TENANT_ADMIN, Role.MEMBER), users=True)


def replicas(system: System) -> tuple[ServiceProcess, ServiceProcess]:
    return system.apis[0], system.apis[1]


def until(status: Callable[[], int], expected: int) -> float:
    """Seconds until `status()` answers `expected` (fails after PATIENCE)."""
    started = time.monotonic()
    while time.monotonic() - started < PATIENCE:
        if status() == expected:
            return time.monotonic() - started
        time.sleep(0.02)
    msg = f"still not {expected} after {PATIENCE}s (cache TTL {CACHE_SECONDS}s)"
    raise AssertionError(msg)


def bearer(api: ServiceProcess, email: str) -> dict[str, str]:
    answer = httpx.post(f"{api.url}/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def test_a_key_revoked_on_one_replica_is_refused_by_the_other(
    system: System, tenant: Tenant
) -> None:
    a, b = replicas(system)
    member = tenant.headers(Role.MEMBER)
    assert httpx.get(f"{b.url}/api/v1/mandates", headers=member).status_code == 200  # cached
    revoked = httpx.delete(
        f"{a.url}/api/v1/api-keys/{tenant.key_ids[Role.MEMBER]}", headers=tenant.headers()
    )
    assert revoked.status_code == 200
    until(lambda: httpx.get(f"{b.url}/api/v1/mandates", headers=member).status_code, 401)


def test_disabled_user_demoted_user_and_logout_reach_the_other_replica(
    system: System, tenant: Tenant
) -> None:
    a, b = replicas(system)
    admin = tenant.headers()
    users = {u["email"]: u["id"] for u in httpx.get(f"{a.url}/api/v1/users", headers=admin).json()}

    member = bearer(a, tenant.emails[Role.MEMBER])
    assert httpx.get(f"{b.url}/api/v1/mandates", headers=member).status_code == 200
    patched = httpx.patch(
        f"{a.url}/api/v1/users/{users[tenant.emails[Role.MEMBER]]}",
        json={"enabled": False},
        headers=admin,
    )
    assert patched.status_code == 200
    until(lambda: httpx.get(f"{b.url}/api/v1/mandates", headers=member).status_code, 401)

    boss = bearer(a, tenant.emails[Role.TENANT_ADMIN])
    assert httpx.get(f"{b.url}/api/v1/users", headers=boss).status_code == 200
    demoted = httpx.patch(
        f"{a.url}/api/v1/users/{users[tenant.emails[Role.TENANT_ADMIN]]}",
        json={"role": "member"},
        headers=admin,
    )
    assert demoted.status_code == 200
    until(lambda: httpx.get(f"{b.url}/api/v1/users", headers=boss).status_code, 403)

    assert httpx.post(f"{a.url}/api/v1/auth/logout", headers=boss).status_code == 204
    until(lambda: httpx.get(f"{b.url}/api/v1/mandates", headers=boss).status_code, 401)


def test_an_issuer_removed_on_one_replica_is_untrusted_on_the_other(
    system: System, tenant: Tenant
) -> None:
    a, b = replicas(system)
    issuer = system.issuers[0]

    def verification() -> str:
        created = httpx.post(
            f"{b.url}/api/v1/mandates",
            json={"vc_jwt": issuer.mandate()},
            headers=tenant.headers(),
            timeout=10,
        )
        assert created.status_code == 201, created.text
        return str(created.json()["verification_status"])

    assert verification() == "VALID"  # the tenant's issuers are now cached on B
    trusted = httpx.get(f"{a.url}/api/v1/trusted-issuers", headers=tenant.headers()).json()
    removed = httpx.delete(
        f"{a.url}/api/v1/trusted-issuers/{trusted[0]['id']}", headers=tenant.headers()
    )
    assert removed.status_code == 204
    until(lambda: 1 if verification() == "ISSUER_UNKNOWN" else 0, 1)


def test_readiness_reports_the_channel(system: System) -> None:
    for api in system.apis:
        body = httpx.get(f"{api.url}/readyz").json()
        assert "revocations" not in body.get("degraded", {}), body


def test_a_lost_channel_reconnects_and_forgets_everything(system: System, tenant: Tenant) -> None:
    """Notifications sent while a replica was not listening are lost: on reconnecting it clears
    its caches (a "gap"), so a key revoked meanwhile is refused from then on."""

    def gaps(api: ServiceProcess) -> float:
        return value(scrape(api.url), "cache_invalidations_total", kind="gap")

    a, b = replicas(system)
    member = tenant.headers(Role.MEMBER)
    assert httpx.get(f"{b.url}/api/v1/mandates", headers=member).status_code == 200  # cached
    before = gaps(b)
    system.query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
        APPLICATION_NAME,
    )
    # Revoked straight in the database while nobody listens: no notification reaches anyone.
    system.query(
        "UPDATE api_keys SET revoked_at = now() WHERE id = $1", tenant.key_ids[Role.MEMBER]
    )
    until(lambda: 1 if gaps(b) > before else 0, 1)
    until(lambda: httpx.get(f"{b.url}/api/v1/mandates", headers=member).status_code, 401)
    for api in (a, b):
        assert "revocations" not in httpx.get(f"{api.url}/readyz").json().get("degraded", {})


def test_a_deleted_subscription_gets_no_further_attempt() -> None:
    """The worker reads the subscription for every attempt: once deleted, retries stop."""
    with System(partitions=1) as system:
        assert system.receiver is not None
        system.start_services()
        tenant = system.add_tenant()
        subscription = system.subscribe(tenant, "/failing")
        system.receiver.register("/failing", subscription["secret"], always(500))
        created = httpx.post(
            f"{system.api.url}/api/v1/mandates",
            json={"vc_jwt": system.issuers[0].mandate()},
            headers=tenant.headers(),
            timeout=10,
        )
        assert created.status_code == 201
        system.receiver.wait_for(lambda r: len(r.at("/failing")) >= 1)
        deleted = httpx.delete(
            f"{system.api.url}/api/v1/webhooks/{subscription['id']}", headers=tenant.headers()
        )
        assert deleted.status_code == 204
        attempts = len(system.receiver.at("/failing"))  # at most one more may be in flight
        skipped = wait_until(
            lambda: (
                system.scalar("SELECT count(*) FROM webhook_deliveries WHERE status = 'failed'")
                == 1
            ),
            timeout=10,
        )
        assert skipped, "the retry was not dropped"
        assert len(system.receiver.at("/failing")) <= attempts + 1


async def test_the_worker_hears_subscription_changes_at_commit_only(database_url: str) -> None:
    """What a worker's subscription cache listens to: announced at commit, never on rollback."""
    import asyncio

    from sqlalchemy.ext.asyncio import create_async_engine

    from mandate_vault_api.revocation import SUBSCRIPTION, announce
    from mandate_vault_worker.revocations import subscription_listener

    forgotten: list[str] = []
    gaps: list[None] = []
    listener = subscription_listener(database_url, forgotten.append, lambda: gaps.append(None))
    assert listener is not None
    assert subscription_listener("sqlite+aiosqlite:///x.db", print, print) is None
    task = asyncio.create_task(listener.run())
    engine = create_async_engine(database_url)
    try:
        for _ in range(100):
            if listener.connected:
                break
            await asyncio.sleep(0.05)
        assert gaps == [None], "a (re)connect forgets everything"
        async with engine.connect() as conn:
            async with conn.begin():
                await announce(conn, SUBSCRIPTION, "sub-rolled-back")
                await conn.rollback()
            async with conn.begin():
                await announce(conn, SUBSCRIPTION, "sub-deleted")
        for _ in range(100):
            if forgotten:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)
        assert forgotten == ["sub-deleted"]
    finally:
        task.cancel()
        await engine.dispose()
