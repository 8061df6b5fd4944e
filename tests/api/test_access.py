"""The role matrix and tenant isolation, over every route."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from mandate_vault_api.roles import Permission, Role, allows
from mandate_vault_harness.inprocess import Api, unique_tenant
from mandate_vault_harness.issuer import Issuer
from mandate_vault_shared.db.schema import webhook_deliveries
from mandate_vault_shared.webhooks import new_event_id


@dataclass
class World:
    tenant: str
    ids: dict[str, str]
    headers: dict[Role, dict[str, str]]


async def build_world(api: Api, bank: Issuer) -> World:
    """One tenant with a user per role and one object of every kind."""
    tenant = unique_tenant("acme")
    await api.add_tenant(tenant, bank.did)
    headers = {}
    for role in Role:
        email = f"{role.value}@{tenant}.example"
        await api.add_user(tenant, email, role)
        headers[role] = await api.login(email)
    admin = headers[Role.TENANT_ADMIN]
    mandate = await api.client.post(
        "/api/v1/mandates", json={"vc_jwt": bank.mandate()}, headers=admin
    )
    user = await api.client.post(
        "/api/v1/users",
        json={"email": f"extra@{tenant}.example", "password": "p" * 12, "role": "member"},
        headers=admin,
    )
    key = await api.client.post(
        "/api/v1/api-keys", json={"name": "k", "role": "member"}, headers=admin
    )
    issuer = await api.client.post(
        "/api/v1/trusted-issuers", json={"issuer": "did:web:extra.example"}, headers=admin
    )
    webhook = await api.client.post(
        "/api/v1/webhooks",
        json={"url": "http://127.0.0.1:9/hook", "event_types": ["MandateCreated"]},
        headers=admin,
    )
    event_id = new_event_id()
    async with api.transaction() as conn:  # a delivery as the worker leaves it
        await conn.execute(
            webhook_deliveries.insert().values(
                event_id=event_id,
                subscription_id=webhook.json()["id"],
                tenant_id=tenant,
                event_type="MandateCreated",
                status="dead_lettered",
                attempts=1,
                payload="{}",
                created_at=api.clock(),
                updated_at=api.clock(),
            )
        )
    ids = {
        "event_id": event_id,
        "subscription_id": webhook.json()["id"],
        "mandate_id": mandate.json()["id"],
        "user_id": user.json()["id"],
        "key_id": key.json()["id"],
        "issuer_id": issuer.json()["id"],
        "tenant_id": tenant,
    }
    return World(tenant, ids, headers)


# (method, path template, permission or None for "any authenticated caller", body factory)
OPERATIONS: list[tuple[str, str, Permission | None, Any]] = [
    ("POST", "/api/v1/mandates", Permission.MANDATES_WRITE, lambda w, b: {"vc_jwt": b.mandate()}),
    ("GET", "/api/v1/mandates", Permission.MANDATES_READ, None),
    ("GET", "/api/v1/mandates/{mandate_id}", Permission.MANDATES_READ, None),
    ("POST", "/api/v1/mandates/{mandate_id}/verify", Permission.MANDATES_WRITE, None),
    ("POST", "/api/v1/mandates/{mandate_id}/revoke", Permission.MANDATES_WRITE, None),
    ("GET", "/api/v1/trusted-issuers", Permission.ISSUERS_READ, None),
    (
        "POST",
        "/api/v1/trusted-issuers",
        Permission.ISSUERS_MANAGE,
        lambda w, b: {"issuer": f"did:web:{unique_tenant()}.example"},
    ),
    ("DELETE", "/api/v1/trusted-issuers/{issuer_id}", Permission.ISSUERS_MANAGE, None),
    ("GET", "/api/v1/users", Permission.USERS_MANAGE, None),
    ("GET", "/api/v1/users/{user_id}", Permission.USERS_MANAGE, None),
    ("PATCH", "/api/v1/users/{user_id}", Permission.USERS_MANAGE, lambda w, b: {"enabled": True}),
    (
        "POST",
        "/api/v1/users",
        Permission.USERS_MANAGE,
        lambda w, b: {
            "email": f"{unique_tenant()}@x.example",
            "password": "p" * 12,
            "role": "readonly",
        },
    ),
    ("GET", "/api/v1/api-keys", Permission.API_KEYS_MANAGE, None),
    (
        "POST",
        "/api/v1/api-keys",
        Permission.API_KEYS_MANAGE,
        lambda w, b: {"name": "n", "role": "readonly"},
    ),
    ("DELETE", "/api/v1/api-keys/{key_id}", Permission.API_KEYS_MANAGE, None),
    ("GET", "/api/v1/webhooks", Permission.WEBHOOKS_READ, None),
    (
        "POST",
        "/api/v1/webhooks",
        Permission.WEBHOOKS_WRITE,
        lambda w, b: {"url": "http://127.0.0.1:9/other", "event_types": ["MandateRevoked"]},
    ),
    ("GET", "/api/v1/webhooks/{subscription_id}", Permission.WEBHOOKS_READ, None),
    ("GET", "/api/v1/webhooks/{subscription_id}/deliveries", Permission.WEBHOOKS_READ, None),
    ("GET", "/api/v1/webhooks/{subscription_id}/events", Permission.WEBHOOKS_READ, None),
    (
        "GET",
        "/api/v1/webhooks/{subscription_id}/events/{event_id}/attempts",
        Permission.WEBHOOKS_READ,
        None,
    ),
    (
        "POST",
        "/api/v1/webhooks/{subscription_id}/events/{event_id}/retry",
        Permission.WEBHOOKS_WRITE,
        None,
    ),
    (
        "POST",
        "/api/v1/webhooks/{subscription_id}/recover",
        Permission.WEBHOOKS_WRITE,
        lambda w, b: {"since": "2026-01-01T00:00:00Z"},
    ),
    (
        "PATCH",
        "/api/v1/webhooks/{subscription_id}",
        Permission.WEBHOOKS_WRITE,
        lambda w, b: {"description": "changed"},
    ),
    ("POST", "/api/v1/webhooks/{subscription_id}/rotate-secret", Permission.WEBHOOKS_WRITE, None),
    ("DELETE", "/api/v1/webhooks/{subscription_id}", Permission.WEBHOOKS_WRITE, None),
    ("GET", "/api/v1/tenants", Permission.TENANTS_MANAGE, None),
    (
        "POST",
        "/api/v1/tenants",
        Permission.TENANTS_MANAGE,
        lambda w, b: {"id": unique_tenant(), "name": "N"},
    ),
    ("GET", "/api/v1/tenants/{tenant_id}", None, None),
    ("GET", "/api/v1/auth/me", None, None),
]


def api_routes(api: Api) -> set[tuple[str, str]]:
    """Every documented operation, from the OpenAPI document the app serves."""
    paths = api.app.openapi()["paths"]
    routes = {(method.upper(), path) for path, ops in paths.items() for method in ops}
    assert routes, "the OpenAPI document lists no operations"
    return routes


async def test_every_route_is_in_the_matrix(api: Api) -> None:
    covered = {(m, p) for m, p, _, _ in OPERATIONS}
    ignored = {
        ("POST", "/api/v1/auth/login"),
        ("POST", "/api/v1/auth/refresh"),
        ("POST", "/api/v1/auth/logout"),
        ("GET", "/api/v1/info"),
    }
    assert api_routes(api) - ignored <= covered, "add new routes to OPERATIONS"


@pytest.mark.parametrize("role", list(Role))
async def test_role_matrix(api: Api, bank: Issuer, role: Role) -> None:
    world = await build_world(api, bank)
    for method, template, permission, body in OPERATIONS:
        path = template.format(**world.ids)
        json = body(world, bank) if body else None
        response = await api.client.request(method, path, json=json, headers=world.headers[role])
        allowed = permission is None or allows(role, permission)
        if allowed:
            assert response.status_code < 400, (role, method, path, response.text)
        else:
            assert response.status_code == 403, (role, method, path, response.text)
            assert response.json()["error"] == "forbidden"


async def test_nobody_grants_a_role_above_their_own(api: Api, bank: Issuer) -> None:
    world = await build_world(api, bank)
    tenant_admin = world.headers[Role.TENANT_ADMIN]
    create_admin = await api.client.post(
        "/api/v1/users",
        json={"email": "boss@x.example", "password": "p" * 12, "role": "admin"},
        headers=tenant_admin,
    )
    assert create_admin.status_code == 403
    assert create_admin.json()["error"] == "role_too_high"
    admin_key = await api.client.post(
        "/api/v1/api-keys", json={"name": "k", "role": "admin"}, headers=tenant_admin
    )
    assert admin_key.status_code == 403
    promote = await api.client.patch(
        f"/api/v1/users/{world.ids['user_id']}", json={"role": "admin"}, headers=tenant_admin
    )
    assert promote.status_code == 403
    users = (await api.client.get("/api/v1/users", headers=tenant_admin)).json()
    admin_id = next(u["id"] for u in users if u["role"] == "admin")
    demote_admin = await api.client.patch(
        f"/api/v1/users/{admin_id}", json={"role": "readonly"}, headers=tenant_admin
    )
    assert demote_admin.status_code == 403


async def test_api_keys_carry_their_role_and_tenant(api: Api, bank: Issuer) -> None:
    world = await build_world(api, bank)
    created = await api.client.post(
        "/api/v1/api-keys",
        json={"name": "ro", "role": "readonly"},
        headers=world.headers[Role.TENANT_ADMIN],
    )
    key = created.json()["key"]
    assert key.startswith("mvk_")
    listed = await api.client.get("/api/v1/api-keys", headers=world.headers[Role.TENANT_ADMIN])
    assert all("key" not in item for item in listed.json())
    as_key = {"X-API-Key": key}
    assert (await api.client.get("/api/v1/mandates", headers=as_key)).status_code == 200
    write = await api.client.post(
        "/api/v1/mandates", json={"vc_jwt": bank.mandate()}, headers=as_key
    )
    assert write.status_code == 403
    revoked = await api.client.delete(
        f"/api/v1/api-keys/{created.json()['id']}", headers=world.headers[Role.TENANT_ADMIN]
    )
    assert revoked.status_code == 200
    assert (await api.client.get("/api/v1/mandates", headers=as_key)).status_code == 401
    assert (
        await api.client.get("/api/v1/mandates", headers={"X-API-Key": "mvk_nope"})
    ).status_code == 401
    assert (await api.client.get("/api/v1/mandates")).status_code == 401


async def test_tenant_isolation_every_id_route_answers_404(api: Api, bank: Issuer) -> None:
    a = await build_world(api, bank)
    b = await build_world(api, bank)
    intruder = b.headers[Role.TENANT_ADMIN]
    id_routes = [(m, p, body) for m, p, _, body in OPERATIONS if "{" in p]
    assert {p for _, p, _ in id_routes} == {p for _, p in api_routes(api) if "{" in p}
    for method, template, body in id_routes:
        path = template.format(**a.ids)
        json = body(a, bank) if body else None
        response = await api.client.request(method, path, json=json, headers=intruder)
        assert response.status_code == 404, (method, path, response.text)
    # Lists never leak the other tenant's objects.
    for path in (
        "/api/v1/mandates",
        "/api/v1/users",
        "/api/v1/api-keys",
        "/api/v1/trusted-issuers",
    ):
        text = (await api.client.get(path, headers=intruder)).text
        assert not any(object_id in text for object_id in a.ids.values()), path
    # Naming another tenant is for admins only.
    spoof = await api.client.get("/api/v1/mandates", headers={**intruder, "X-Tenant-ID": a.tenant})
    assert spoof.status_code == 403
    # The object is untouched.
    mine = await api.client.get(
        f"/api/v1/mandates/{a.ids['mandate_id']}", headers=a.headers[Role.TENANT_ADMIN]
    )
    assert mine.json()["status"] == "ACTIVE"


async def test_admin_acts_on_any_tenant_by_naming_it(api: Api, bank: Issuer) -> None:
    a = await build_world(api, bank)
    b = await build_world(api, bank)
    admin = {**b.headers[Role.ADMIN], "X-Tenant-ID": a.tenant}
    found = await api.client.get(f"/api/v1/mandates/{a.ids['mandate_id']}", headers=admin)
    assert found.status_code == 200
    tenants = await api.client.get("/api/v1/tenants", headers=b.headers[Role.ADMIN])
    assert {a.tenant, b.tenant} <= {t["id"] for t in tenants.json()}


async def test_admin_naming_a_tenant_that_does_not_exist_gets_404(api: Api, bank: Issuer) -> None:
    world = await build_world(api, bank)
    admin = {**world.headers[Role.ADMIN], "X-Tenant-ID": "no-such-tenant"}
    created = await api.client.post(
        "/api/v1/mandates", json={"vc_jwt": bank.mandate()}, headers=admin
    )
    assert created.status_code == 404, created.text
    assert created.json()["error"] == "not_found"
    listed = await api.client.get("/api/v1/mandates", headers=admin)
    assert listed.status_code == 404
