"""The api app in-process (asgi-lifespan, httpx's ASGI transport) on a real database: fast
tests of routes and domain logic, with a clock the test moves (`FakeClock`)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from mandate_vault_api import directory, migrate
from mandate_vault_api.main import SERVICE_NAME, create_app
from mandate_vault_api.roles import Role
from mandate_vault_api.settings import ApiSettings
from mandate_vault_harness.system import PASSWORD
from mandate_vault_harness.telemetry import telemetry_for

SIGNING_KEY = "test-signing-key-0123456789abcdef"


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Api:
    """The app under test, its HTTP client, its clock and its lifespan state."""

    app: FastAPI
    client: httpx.AsyncClient
    clock: FakeClock
    settings: ApiSettings
    state: dict[str, Any]

    def transaction(self) -> Any:
        return self.state["context"].db.transaction()

    async def add_tenant(self, tenant_id: str, *issuers: str) -> None:
        async with self.transaction() as conn:
            await directory.create_tenant(conn, tenant_id, tenant_id.title(), self.clock())
            for issuer in issuers:
                await directory.add_trusted_issuer(conn, tenant_id, issuer, self.clock())

    async def add_user(self, tenant_id: str, email: str, role: Role) -> None:
        async with self.transaction() as conn:
            await directory.create_user(conn, tenant_id, email, PASSWORD, role, self.clock())

    async def login(self, email: str, password: str = PASSWORD) -> dict[str, str]:
        response = await self.client.post(
            "/api/v1/auth/login", json={"email": email, "password": password}
        )
        assert response.status_code == 200, response.text
        return {"Authorization": f"Bearer {response.json()['access_token']}"}


def with_request_state(app: FastAPI, state: dict[str, Any]) -> Any:
    """Like uvicorn: every request gets its own shallow copy of the lifespan state."""

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        scope["state"] = dict(state)
        await app(scope, receive, send)

    return wrapped


def api_settings(database_url: str, verifier_url: str, **overrides: Any) -> ApiSettings:
    fields: dict[str, Any] = {
        "gauge_refresh_interval_seconds": 0.2,
        "expiry_sweep_interval_seconds": 0.2,
        "ssrf_allowlist": "127.0.0.1,localhost",
    }
    return ApiSettings(
        database_url=database_url,
        verifier_url=verifier_url,
        token_signing_key=SIGNING_KEY,
        **(fields | overrides),
    )


@asynccontextmanager
async def running_api(database_url: str, verifier_url: str, **overrides: Any) -> AsyncIterator[Api]:
    """The api app, migrated and started, with an HTTP client in front of it."""
    await asyncio.to_thread(migrate.upgrade, database_url)
    clock = FakeClock()
    settings = api_settings(database_url, verifier_url, **overrides)
    app = create_app(settings, telemetry_for(SERVICE_NAME), clock=clock)
    async with LifespanManager(app) as manager:
        state = manager._state
        transport = httpx.ASGITransport(app=with_request_state(app, state))
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield Api(app, client, clock, settings, state)


def unique_tenant(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def tenant_with_writer(
    api: Api, *issuers: str, role: Role = Role.TENANT_ADMIN
) -> tuple[str, dict[str, str]]:
    tenant = unique_tenant()
    await api.add_tenant(tenant, *issuers)
    email = f"writer@{tenant}.example"
    await api.add_user(tenant, email, role)
    return tenant, await api.login(email)
