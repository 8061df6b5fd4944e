"""Roles and the permission matrix enforced on every route.

| permission        | admin | tenant_admin | member | readonly |
|-------------------|:-----:|:------------:|:------:|:--------:|
| tenants.manage    |   x   |              |        |          |
| users.manage      |   x   |      x       |        |          |
| api_keys.manage   |   x   |      x       |        |          |
| issuers.manage    |   x   |      x       |        |          |
| issuers.read      |   x   |      x       |   x    |    x     |
| mandates.read     |   x   |      x       |   x    |    x     |
| mandates.write    |   x   |      x       |   x    |          |
| webhooks.read     |   x   |      x       |   x    |    x     |
| webhooks.write    |   x   |      x       |        |          |

`admin` acts on every tenant; the others only on their own. Nobody grants a role above their
own (a tenant_admin can create tenant_admins, members and readonly users, never admins).
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    TENANT_ADMIN = "tenant_admin"
    MEMBER = "member"
    READONLY = "readonly"


class Permission(StrEnum):
    TENANTS_MANAGE = "tenants.manage"
    USERS_MANAGE = "users.manage"
    API_KEYS_MANAGE = "api_keys.manage"
    ISSUERS_MANAGE = "issuers.manage"
    ISSUERS_READ = "issuers.read"
    MANDATES_READ = "mandates.read"
    MANDATES_WRITE = "mandates.write"
    WEBHOOKS_READ = "webhooks.read"
    WEBHOOKS_WRITE = "webhooks.write"


_RANK = {Role.READONLY: 0, Role.MEMBER: 1, Role.TENANT_ADMIN: 2, Role.ADMIN: 3}

_READ = {
    Permission.ISSUERS_READ,
    Permission.MANDATES_READ,
    Permission.WEBHOOKS_READ,
}
_MATRIX: dict[Role, frozenset[Permission]] = {
    Role.READONLY: frozenset(_READ),
    Role.MEMBER: frozenset({*_READ, Permission.MANDATES_WRITE}),
    Role.TENANT_ADMIN: frozenset(
        {
            *_READ,
            Permission.MANDATES_WRITE,
            Permission.USERS_MANAGE,
            Permission.API_KEYS_MANAGE,
            Permission.ISSUERS_MANAGE,
            Permission.WEBHOOKS_WRITE,
        }
    ),
    Role.ADMIN: frozenset(Permission),
}


def allows(role: Role, permission: Permission) -> bool:
    return permission in _MATRIX[role]


def can_grant(granter: Role, role: Role) -> bool:
    return _RANK[role] <= _RANK[granter]
