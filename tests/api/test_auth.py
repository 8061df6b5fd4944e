"""Login, refresh, logout and lockout on real PostgreSQL, with an injectable clock."""

from __future__ import annotations

from mandate_vault_api.roles import Role
from mandate_vault_harness.inprocess import Api
from mandate_vault_harness.system import PASSWORD


async def test_login_refresh_logout(api: Api) -> None:
    await api.add_tenant("acme")
    await api.add_user("acme", "ops@acme.example", Role.TENANT_ADMIN)

    login = await api.client.post(
        "/api/v1/auth/login", json={"email": "OPS@acme.example", "password": PASSWORD}
    )
    assert login.status_code == 200
    tokens = login.json()
    assert tokens["token_type"] == "bearer"
    assert tokens["expires_in"] == 900
    assert tokens["refresh_token"].startswith("mvr_")
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}

    me = await api.client.get("/api/v1/auth/me", headers=bearer)
    assert me.json()["tenant_id"] == "acme"
    assert me.json()["role"] == "tenant_admin"

    # A refresh token is never an access token.
    as_access = await api.client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {tokens['refresh_token']}"}
    )
    assert as_access.status_code == 401
    assert as_access.json()["error"] == "invalid_token"

    refreshed = await api.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert refreshed.status_code == 200
    # Rotation: the old refresh token is spent.
    again = await api.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert again.status_code == 401

    new_bearer = {"Authorization": f"Bearer {refreshed.json()['access_token']}"}
    assert (await api.client.post("/api/v1/auth/logout", headers=new_bearer)).status_code == 204
    assert (await api.client.get("/api/v1/auth/me", headers=new_bearer)).status_code == 401
    spent = await api.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": refreshed.json()["refresh_token"]}
    )
    assert spent.status_code == 401


async def test_access_token_expires_with_the_clock(api: Api) -> None:
    await api.add_tenant("acme")
    await api.add_user("acme", "ops@acme.example", Role.MEMBER)
    bearer = await api.login("ops@acme.example")
    assert (await api.client.get("/api/v1/auth/me", headers=bearer)).status_code == 200
    api.clock.advance(901)
    assert (await api.client.get("/api/v1/auth/me", headers=bearer)).status_code == 401


async def failed_login(api: Api, email: str, password: str = "wrong-password") -> int:
    response = await api.client.post(
        "/api/v1/auth/login", json={"email": email, "password": password}
    )
    return response.status_code


async def test_lockout_after_five_failures_for_fifteen_minutes(api: Api) -> None:
    await api.add_tenant("acme")
    await api.add_user("acme", "ops@acme.example", Role.MEMBER)

    assert [await failed_login(api, "ops@acme.example") for _ in range(5)] == [401] * 5
    locked = await api.client.post(
        "/api/v1/auth/login", json={"email": "ops@acme.example", "password": PASSWORD}
    )
    assert locked.status_code == 429
    assert locked.headers["Retry-After"] == "900"
    assert locked.json()["error"] == "account_locked"
    assert set(locked.json()) == {"error", "detail", "request_id"}

    api.clock.advance(600)
    assert (await failed_login(api, "ops@acme.example", PASSWORD)) == 429
    api.clock.advance(301)  # the lock is never permanent
    assert (await failed_login(api, "ops@acme.example", PASSWORD)) == 200


async def test_failures_outside_the_window_do_not_add_up(api: Api) -> None:
    await api.add_tenant("acme")
    await api.add_user("acme", "ops@acme.example", Role.MEMBER)
    for _ in range(4):
        assert await failed_login(api, "ops@acme.example") == 401
    api.clock.advance(901)
    for _ in range(4):
        assert await failed_login(api, "ops@acme.example") == 401
    assert await failed_login(api, "ops@acme.example", PASSWORD) == 200


async def test_unknown_accounts_answer_exactly_like_real_ones(api: Api) -> None:
    await api.add_tenant("acme")
    await api.add_user("acme", "ops@acme.example", Role.MEMBER)
    for email in ("ops@acme.example", "ghost@acme.example"):
        answers = [
            await api.client.post("/api/v1/auth/login", json={"email": email, "password": "nope"})
            for _ in range(6)
        ]
        assert [a.status_code for a in answers] == [401] * 5 + [429]
        assert {a.json()["detail"] for a in answers[:5]} == {"Invalid email or password."}


async def test_disabled_user_cannot_log_in(api: Api) -> None:
    await api.add_tenant("acme")
    await api.add_user("acme", "admin@acme.example", Role.TENANT_ADMIN)
    await api.add_user("acme", "gone@acme.example", Role.MEMBER)
    admin = await api.login("admin@acme.example")
    victim = await api.login("gone@acme.example")
    users = (await api.client.get("/api/v1/users", headers=admin)).json()
    gone = next(u for u in users if u["email"] == "gone@acme.example")
    patched = await api.client.patch(
        f"/api/v1/users/{gone['id']}", json={"enabled": False}, headers=admin
    )
    assert patched.json()["enabled"] is False
    assert await failed_login(api, "gone@acme.example", PASSWORD) == 401
    # Sessions of a disabled user stop working at once.
    assert (await api.client.get("/api/v1/auth/me", headers=victim)).status_code == 401
