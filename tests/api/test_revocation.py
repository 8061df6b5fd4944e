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
from reliability.stack import PASSWORD, System, Tenant

from mandate_vault_api.roles import Role
from tests.fixtures.services import ServiceProcess

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
