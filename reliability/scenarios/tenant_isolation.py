"""Tenant isolation, the role matrix and mass assignment, generated from the api's own OpenAPI.

The operations come from `GET /openapi.json` of the running api; the permission each needs is
read from the route's own dependencies (`require(Permission...)`, see roles.py), so a new route
is covered without editing this file. Tenants A and B each have an API key per role (readonly,
member, tenant_admin, admin) and A has one object of every kind (mandate, user, API key, trusted
issuer, webhook subscription).

- Isolation: every operation whose path takes an id is called with B's keys (every role except
  admin, which acts on every tenant by design) on A's object: 404 when the role has the
  permission, 403 when it has not; never 2xx. B naming A in X-Tenant-ID: 403. Afterwards A's
  objects are unchanged. Every list operation B may call, also with `?tenant_id=A`, must not
  contain any of A's ids, its tenant id or its user's e-mail.
- Role matrix: every operation, each role of A, on ids that do not exist (no side effects on
  real objects): 403 exactly when roles.py denies the permission.
- Mass assignment: `tenant_id`, `status`, `verification_status`, `role`, `secret`, `enabled`
  smuggled into create/update bodies are refused (422) or, for a role above one's own, 403;
  nothing changes.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from fastapi.routing import APIRoute

from mandate_vault_api.roles import Permission, Role, allows
from mandate_vault_api.routes import (
    api_keys,
    auth,
    issuers,
    mandates,
    redelivery,
    tenants,
    users,
    webhooks,
)
from mandate_vault_harness.system import ROLES, System, Tenant, server_errors
from reliability.core import Findings, Row, Scale

NAME = "tenant isolation, roles, mass assignment"
METHODS = ("get", "post", "put", "patch", "delete")
SKIPPED_PREFIXES = ("/api/v1/auth/",)  # login and tokens: not tenant objects (rate limits scenario)
ID_PARAMS = ("mandate_id", "subscription_id", "user_id", "key_id", "issuer_id", "tenant_id")


def route_permissions() -> dict[tuple[str, str], Permission | None]:
    """(METHOD, path) -> the permission its `require(...)` dependency checks (None: any caller)."""

    def found(dependant: Any) -> set[Permission]:
        perms: set[Permission] = set()
        for cell in getattr(dependant.call, "__closure__", None) or ():
            try:
                if isinstance(cell.cell_contents, Permission):
                    perms.add(cell.cell_contents)
            except ValueError:
                continue
        for sub in dependant.dependencies:
            perms |= found(sub)
        return perms

    table: dict[tuple[str, str], Permission | None] = {}
    for module in (api_keys, auth, issuers, mandates, redelivery, tenants, users, webhooks):
        for route in module.router.routes:
            assert isinstance(route, APIRoute)
            perms = found(route.dependant)
            for method in route.methods or ():
                table[(method, route.path)] = next(iter(perms)) if perms else None
    return table


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        schema = spec["components"]["schemas"][name]
    return schema


def example_body(spec: dict[str, Any], operation: dict[str, Any]) -> dict[str, Any] | None:
    """A valid body for `operation` from its schema's example (None when it takes none)."""
    content = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if content is None:
        return None
    schema = _resolve(spec, content["schema"])
    examples = schema.get("examples") or []
    return dict(examples[0]) if examples else {}


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    found = []
    for path, item in spec["paths"].items():
        for method in METHODS:
            if (
                method in item
                and path.startswith("/api/v1/")
                and not path.startswith(SKIPPED_PREFIXES)
                and path not in ("/api/v1/info",)
            ):
                found.append((method.upper(), path, item[method]))
    return found


def _fill(path: str, ids: dict[str, str]) -> str:
    for name in ID_PARAMS:
        path = path.replace("{" + name + "}", ids.get(name, "missing"))
    return path


def _objects(client: httpx.Client, tenant: Tenant, token: str) -> dict[str, str]:
    """One object of every kind in `tenant`; returns path parameter -> id."""
    h = tenant.headers()
    mandate = client.post("/api/v1/mandates", json={"vc_jwt": token}, headers=h).json()
    user = client.post(
        "/api/v1/users",
        headers=h,
        json={
            "email": f"victim@{tenant.id}.example",
            "password": "victim-passphrase-1",
            "role": "member",
        },
    ).json()
    key = client.post("/api/v1/api-keys", json={"name": "victim", "role": "member"}, headers=h)
    issuer = client.post(
        "/api/v1/trusted-issuers", headers=h, json={"issuer": f"did:web:{tenant.id}.example"}
    ).json()
    hook = client.post(
        "/api/v1/webhooks",
        headers=h,
        json={"url": "http://127.0.0.1:9/victim", "event_types": ["MandateCreated"]},
    ).json()
    return {
        "mandate_id": mandate["id"],
        "user_id": user["id"],
        "key_id": key.json()["id"],
        "issuer_id": issuer["id"],
        "subscription_id": hook["id"],
        "tenant_id": tenant.id,
    }


def _snapshot(client: httpx.Client, tenant: Tenant, ids: dict[str, str]) -> dict[str, Any]:
    h = tenant.headers(Role.ADMIN)
    mandate = client.get(f"/api/v1/mandates/{ids['mandate_id']}", headers=h).json()
    user = client.get(f"/api/v1/users/{ids['user_id']}", headers=h).json()
    hook = client.get(f"/api/v1/webhooks/{ids['subscription_id']}", headers=h).json()
    keys = {k["id"]: k["revoked_at"] for k in client.get("/api/v1/api-keys", headers=h).json()}
    issuer_ids = {i["id"] for i in client.get("/api/v1/trusted-issuers", headers=h).json()}
    return {
        "mandate": (mandate.get("status"), mandate.get("revoked_at")),
        "user": (user.get("role"), user.get("enabled")),
        "webhook": (hook.get("url"), hook.get("enabled"), hook.get("event_types")),
        "key_revoked": keys.get(ids["key_id"], "missing"),
        "issuer_present": ids["issuer_id"] in issuer_ids,
    }


def run(scale: Scale) -> Row:
    del scale  # the matrix is small: the same in both modes
    findings = Findings()
    permissions = route_permissions()
    with System(broker=False) as system:
        api = system.start_api(wait=False)
        system.ready()
        a = system.add_tenant(roles=ROLES)
        b = system.add_tenant(roles=ROLES)
        issuer = system.issuers[0]
        with httpx.Client(base_url=api.url, timeout=15) as client:
            spec = client.get("/openapi.json").json()
            ops = operations(spec)
            ids = _objects(client, a, issuer.mandate())
            b_ids = _objects(client, b, issuer.mandate())
            before = _snapshot(client, a, ids)
            secrets_of_a = {*ids.values(), f"victim@{a.id}.example"}
            isolation = _isolation(client, spec, ops, permissions, a, b, ids, findings)
            listing = _lists(client, ops, permissions, a, b, secrets_of_a, findings)
            matrix = _role_matrix(client, spec, ops, permissions, a, findings)
            mass = _mass_assignment(client, a, b, ids, b_ids, issuer.mandate(), findings)
            after = _snapshot(client, a, ids)
        five_xx = server_errors(system.processes(), include_503=True)
    findings.check(before == after, f"A's objects changed: {before} -> {after}")
    for cause, n in five_xx.items():
        findings.check(False, f"server error: {cause} (x{n})")
    unknown = [f"{m} {p}" for m, p, _ in ops if (m, p) not in permissions]
    findings.check(not unknown, f"operations without a known permission: {unknown}")
    figures = {
        "operations_in_openapi": len(ops),
        "isolation_requests": isolation,
        "list_requests": listing,
        "role_matrix_requests": matrix,
        "mass_assignment_requests": mass,
        "a_objects_unchanged": before == after,
    }
    tried = (
        f"{len(ops)} operations from /openapi.json: {isolation} cross-tenant calls on A's ids, "
        f"{listing} list calls, {matrix} role-matrix calls, {mass} mass-assignment attempts"
    )
    leaked = (
        "0 cross-tenant reads or writes, 0 list leaks, roles as roles.py, mass assignment refused"
        if findings.ok
        else f"{len(findings.problems)} violations"
    )
    return findings.row(NAME, tried, leaked, figures)


def _isolation(
    client: httpx.Client,
    spec: dict[str, Any],
    ops: list[tuple[str, str, dict[str, Any]]],
    permissions: dict[tuple[str, str], Permission | None],
    a: Tenant,
    b: Tenant,
    ids: dict[str, str],
    findings: Findings,
) -> int:
    calls = 0
    for method, path, operation in ops:
        if "{" not in path:
            continue
        url = _fill(path, ids)
        body = example_body(spec, operation)
        permission = permissions.get((method, path))
        for role in (Role.READONLY, Role.MEMBER, Role.TENANT_ADMIN):
            may = permission is None or allows(role, permission)
            response = client.request(method, url, json=body, headers=b.headers(role))
            calls += 1
            want = 404 if may else 403
            findings.check(
                response.status_code == want,
                f"B {role.value} {method} {path} on A's object: "
                f"{response.status_code} (want {want})",
            )
        # naming A's tenant explicitly
        response = client.request(
            method, url, json=body, headers={**b.headers(Role.TENANT_ADMIN), "X-Tenant-ID": a.id}
        )
        calls += 1
        findings.check(
            response.status_code in (403, 404),
            f"B tenant_admin + X-Tenant-ID A: {method} {path} -> {response.status_code}",
        )
    return calls


def _lists(
    client: httpx.Client,
    ops: list[tuple[str, str, dict[str, Any]]],
    permissions: dict[tuple[str, str], Permission | None],
    a: Tenant,
    b: Tenant,
    secrets_of_a: set[str],
    findings: Findings,
) -> int:
    calls = 0
    for method, path, _ in ops:
        if method != "GET" or "{" in path:
            continue
        for role in (Role.READONLY, Role.MEMBER, Role.TENANT_ADMIN):
            for params in ({}, {"tenant_id": a.id}):
                response = client.get(path, params=params, headers=b.headers(role))
                calls += 1
                leaked = [s for s in secrets_of_a if s in response.text]
                findings.check(not leaked, f"B {role.value} GET {path} {params} shows A: {leaked}")
                permission = permissions.get((method, path))
                if response.status_code == 403:
                    findings.check(
                        permission is not None and not allows(role, permission),
                        f"B {role.value} GET {path}: unexpected 403",
                    )
    return calls


def _role_matrix(
    client: httpx.Client,
    spec: dict[str, Any],
    ops: list[tuple[str, str, dict[str, Any]]],
    permissions: dict[tuple[str, str], Permission | None],
    a: Tenant,
    findings: Findings,
) -> int:
    calls = 0
    absent = {name: str(uuid.uuid4()) for name in ID_PARAMS}
    absent["tenant_id"] = a.id  # GET /tenants/{own id}: every role may read its own tenant
    for method, path, operation in ops:
        permission = permissions.get((method, path))
        body = example_body(spec, operation)
        for role in ROLES:
            response = client.request(
                method, _fill(path, absent), json=body, headers=a.headers(role)
            )
            calls += 1
            may = permission is None or allows(role, permission)
            denied = response.status_code == 403
            findings.check(
                denied != may,
                f"{role.value} {method} {path}: {response.status_code} "
                f"but roles.py says {'allow' if may else 'deny'} "
                f"{permission}",
            )
    return calls


# (method, path, body, headers, the statuses that count as refused)
_Attempt = tuple[str, str, dict[str, Any], dict[str, str], tuple[int, ...]]


def _mandate_fields(a: Tenant, b: Tenant, token: str) -> list[_Attempt]:
    admin = a.headers(Role.TENANT_ADMIN)
    return [
        ("POST", "/api/v1/mandates", {"vc_jwt": token, "tenant_id": b.id}, admin, (422,)),
        ("POST", "/api/v1/mandates", {"vc_jwt": "x.y.z", "status": "ACTIVE"}, admin, (422,)),
        (
            "POST",
            "/api/v1/mandates",
            {"vc_jwt": "x.y.z", "verification_status": "VALID"},
            admin,
            (422,),
        ),
    ]


def _user_fields(a: Tenant, b: Tenant, ids: dict[str, str]) -> list[_Attempt]:
    admin = a.headers(Role.TENANT_ADMIN)
    password = "p" * 12
    user = f"/api/v1/users/{ids['user_id']}"
    return [
        (
            "POST",
            "/api/v1/users",
            {
                "email": f"m1@{a.id}.example",
                "password": password,
                "role": "member",
                "tenant_id": b.id,
            },
            admin,
            (422,),
        ),
        (
            "POST",
            "/api/v1/users",
            {"email": f"m2@{a.id}.example", "password": password, "role": "admin"},
            admin,
            (403,),
        ),
        ("PATCH", user, {"role": "admin"}, admin, (403,)),
        ("PATCH", user, {"tenant_id": b.id}, admin, (422,)),
    ]


def _key_and_issuer_fields(a: Tenant, b: Tenant) -> list[_Attempt]:
    admin = a.headers(Role.TENANT_ADMIN)
    issuer = {"issuer": "did:web:x.example", "tenant_id": b.id}
    return [
        ("POST", "/api/v1/api-keys", {"name": "k", "role": "admin"}, admin, (403,)),
        ("POST", "/api/v1/api-keys", {"name": "k", "tenant_id": b.id}, admin, (422,)),
        ("POST", "/api/v1/trusted-issuers", issuer, admin, (422,)),
    ]


def _webhook_fields(
    a: Tenant, b: Tenant, ids: dict[str, str], b_ids: dict[str, str]
) -> list[_Attempt]:
    admin = a.headers(Role.TENANT_ADMIN)
    target = {"url": "http://127.0.0.1:9/x", "event_types": ["MandateCreated"]}
    return [
        ("POST", "/api/v1/webhooks", {**target, "tenant_id": b.id}, admin, (422,)),
        ("POST", "/api/v1/webhooks", {**target, "secret": "whsec_" + "A" * 32}, admin, (422,)),
        ("PATCH", f"/api/v1/webhooks/{ids['subscription_id']}", {"tenant_id": b.id}, admin, (422,)),
        (
            "PATCH",
            f"/api/v1/webhooks/{b_ids['subscription_id']}",
            {"enabled": False},
            admin,
            (404,),
        ),
    ]


def _above_own_role(a: Tenant, ids: dict[str, str]) -> list[_Attempt]:
    """A tenant admin creating a tenant, a member making itself tenant admin."""
    return [
        (
            "POST",
            "/api/v1/tenants",
            {"id": "evil-tenant", "name": "Evil"},
            a.headers(Role.TENANT_ADMIN),
            (403,),
        ),
        (
            "PATCH",
            f"/api/v1/users/{ids['user_id']}",
            {"role": "tenant_admin"},
            a.headers(Role.MEMBER),
            (403,),
        ),
    ]


def _mass_assignment(
    client: httpx.Client,
    a: Tenant,
    b: Tenant,
    ids: dict[str, str],
    b_ids: dict[str, str],
    token: str,
    findings: Findings,
) -> int:
    admin = a.headers(Role.TENANT_ADMIN)
    count_before = len(client.get("/api/v1/mandates", headers=admin).json()["items"])
    attempts = [
        *_mandate_fields(a, b, token),
        *_user_fields(a, b, ids),
        *_key_and_issuer_fields(a, b),
        *_webhook_fields(a, b, ids, b_ids),
        *_above_own_role(a, ids),
    ]
    for method, path, body, headers, want in attempts:
        response = client.request(method, path, json=body, headers=headers)
        findings.check(
            response.status_code in want,
            f"mass assignment {method} {path} {sorted(body)}: {response.status_code}",
        )
    count_after = len(client.get("/api/v1/mandates", headers=admin).json()["items"])
    findings.check(count_before == count_after, "a refused mass-assignment create stored a mandate")
    b_hook = client.get(f"/api/v1/webhooks/{b_ids['subscription_id']}", headers=b.headers()).json()
    findings.check(b_hook.get("enabled") is True, "A disabled B's webhook")
    return len(attempts)
