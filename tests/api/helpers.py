"""Shared steps of the api tests."""

from __future__ import annotations

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
