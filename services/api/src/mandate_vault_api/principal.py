"""Who is calling: a user (bearer token) or an API key, with a tenant and a role."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mandate_vault_api.roles import Permission, Role, allows
from mandate_vault_shared.errors import Forbidden


@dataclass(frozen=True, slots=True)
class Principal:
    kind: Literal["user", "api_key"]
    id: str
    tenant_id: str
    role: Role
    session_id: str | None = None

    def require(self, permission: Permission) -> None:
        if not allows(self.role, permission):
            raise Forbidden

    def acting_tenant(self, requested: str | None) -> str:
        """The tenant a request acts on: one's own, or any for an admin who names one."""
        if requested is None or requested == self.tenant_id:
            return self.tenant_id
        if self.role is Role.ADMIN:
            return requested
        raise Forbidden
