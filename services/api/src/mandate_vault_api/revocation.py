"""Revocations reach every replica within a second: what each kind of change clears.

A route that revokes or changes something another replica may have cached calls
`announce(conn, KIND, key)` in its transaction (PostgreSQL delivers it to every replica's
`Listener` at commit) and `revocations.apply(KIND, key)` after the commit, which also covers
SQLite's single process. Kinds and keys:

| kind | key | cleared |
|---|---|---|
| `api_key` | the key's SHA-256 | that key's principal |
| `session` | session id | that session's principal (logout, refresh) |
| `user` | user id | every cached session of the user (disabled, role changed) |
| `issuers` | tenant id | the tenant's trusted issuers |
| `subscription` | subscription id | nothing in the api (for webhook-worker caches) |
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from mandate_vault_api.cache import TtlCache
from mandate_vault_shared.invalidation import Handler, Listener, announce
from mandate_vault_shared.telemetry import names
from mandate_vault_shared.telemetry.instruments import Metrics

if TYPE_CHECKING:
    from mandate_vault_api.auth import Authenticator

API_KEY: Final = "api_key"
SESSION: Final = "session"
USER: Final = "user"
ISSUERS: Final = "issuers"
SUBSCRIPTION: Final = "subscription"

__all__ = ["API_KEY", "ISSUERS", "SESSION", "SUBSCRIPTION", "USER", "Revocations", "announce"]


@dataclass
class Revocations:
    authenticator: Authenticator
    issuer_cache: TtlCache[list[str]]

    def handlers(self) -> dict[str, Handler]:
        return {
            API_KEY: self.authenticator.forget_api_key,
            SESSION: self.authenticator.forget_session,
            USER: self.authenticator.forget_user,
            ISSUERS: self.issuer_cache.forget,
            SUBSCRIPTION: lambda _key: None,
        }

    def apply(self, kind: str, key: str) -> None:
        self.handlers()[kind](key)

    def forget_everything(self) -> None:
        self.authenticator.forget_all()
        self.issuer_cache.clear()

    def listener(self, database_url: str, metrics: Metrics) -> Listener:
        received = metrics.counter(
            names.CACHE_INVALIDATIONS_TOTAL,
            "Cache invalidations received from the channel, by kind ('gap': "
            "everything cleared after the channel (re)connected)",
            ("kind",),
        )
        return Listener(
            database_url,
            self.handlers(),
            self.forget_everything,
            lambda kind: received.add((kind,)),
        )
