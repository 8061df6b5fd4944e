"""Rate limits per tenant, per API key, and on login per account and per client address."""

from __future__ import annotations

from mandate_vault_api.roles import Role
from mandate_vault_harness.inprocess import running_api, unique_tenant
from mandate_vault_harness.net import free_port
from mandate_vault_harness.system import PASSWORD


async def statuses(client, method: str, path: str, n: int, **kwargs) -> list[int]:
    return [(await client.request(method, path, **kwargs)).status_code for _ in range(n)]


async def test_tenant_and_api_key_limits_answer_429_with_retry_after(database_url: str) -> None:
    async with running_api(
        database_url,
        f"http://127.0.0.1:{free_port()}",
        rate_limit_tenant_per_second=0.5,
        rate_limit_api_key_per_second=0.25,
    ) as api:
        tenant = unique_tenant()
        await api.add_tenant(tenant)
        await api.add_user(tenant, f"a@{tenant}.example", Role.TENANT_ADMIN)
        bearer = await api.login(f"a@{tenant}.example")
        # Tenant: 0.5/s with a burst of 1 -> the second call in a row is refused.
        answers = await statuses(api.client, "GET", "/api/v1/mandates", 3, headers=bearer)
        assert answers[0] == 200
        assert 429 in answers
        refused = await api.client.get("/api/v1/mandates", headers=bearer)
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) >= 1
        assert refused.json()["error"] == "rate_limited"

        other = unique_tenant()  # another tenant is not affected
        await api.add_tenant(other)
        await api.add_user(other, f"b@{other}.example", Role.TENANT_ADMIN)
        assert (
            await api.client.get("/api/v1/mandates", headers=await api.login(f"b@{other}.example"))
        ).status_code == 200

        metrics = await api.client.get("/api/v1/metrics")
        assert "rate_limited_total" in metrics.text


async def test_api_key_limit(database_url: str) -> None:
    async with running_api(
        database_url,
        f"http://127.0.0.1:{free_port()}",
        rate_limit_api_key_per_second=0.5,
    ) as api:
        tenant = unique_tenant()
        await api.add_tenant(tenant)
        await api.add_user(tenant, f"a@{tenant}.example", Role.TENANT_ADMIN)
        bearer = await api.login(f"a@{tenant}.example")
        key = (
            await api.client.post(
                "/api/v1/api-keys", json={"name": "k", "role": "member"}, headers=bearer
            )
        ).json()["key"]
        answers = await statuses(
            api.client, "GET", "/api/v1/mandates", 3, headers={"X-API-Key": key}
        )
        assert answers[0] == 200
        assert 429 in answers
        # The key's limit is not the user's: the bearer still gets through.
        assert (await api.client.get("/api/v1/mandates", headers=bearer)).status_code == 200


async def test_login_limits_per_account_and_per_client(database_url: str) -> None:
    async with running_api(
        database_url,
        f"http://127.0.0.1:{free_port()}",
        rate_limit_login_account_per_minute=3,
        rate_limit_login_client_per_minute=5,
    ) as api:
        tenant = unique_tenant()
        await api.add_tenant(tenant)
        await api.add_user(tenant, f"a@{tenant}.example", Role.MEMBER)
        body = {"email": f"a@{tenant}.example", "password": PASSWORD}
        per_account = await statuses(api.client, "POST", "/api/v1/auth/login", 4, json=body)
        assert per_account == [200, 200, 200, 429]
        others = [{"email": f"x{n}@{tenant}.example", "password": "nope"} for n in range(3)]
        per_client = [
            (await api.client.post("/api/v1/auth/login", json=b)).status_code for b in others
        ]
        assert per_client[:1] == [401]
        assert per_client[-1] == 429  # 5 per minute from one address, whatever the account
        answer = await api.client.post("/api/v1/auth/login", json=others[0])
        assert answer.status_code == 429
        assert answer.headers["Retry-After"].isdigit()
        samples = (await api.client.get("/api/v1/metrics")).text
        assert 'rate_limited_total{scope="login_account"}' in samples
        assert 'rate_limited_total{scope="login_client"}' in samples


async def test_readiness_mentions_redis_only_when_configured(database_url: str) -> None:
    async with running_api(database_url, f"http://127.0.0.1:{free_port()}") as api:
        body = (await api.client.get("/readyz")).json()
        assert body["status"] == "ready"
        assert "redis" not in body["checks"]
        assert "redis" not in body.get("degraded", {})
    unreachable = f"redis://127.0.0.1:{free_port()}/0"
    async with running_api(
        database_url, f"http://127.0.0.1:{free_port()}", redis_url=unreachable
    ) as api:
        answer = await api.client.get("/readyz")
        assert answer.status_code == 200, "reported, not gating: limits fall back per process"
        assert "Redis unreachable" in answer.json()["degraded"]["redis"]
