"""Shared steps of the api tests."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

from mandate_vault_api.roles import Role
from tests.api.conftest import Api


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


def cli(
    database_url: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`mandate-vault ARGS` as a process, on `database_url`."""
    return subprocess.run(
        [sys.executable, "-m", "mandate_vault_api.cli", *args],
        env={**os.environ, "API_DATABASE_URL": database_url, "LOG_FORMAT": "json", **(env or {})},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
