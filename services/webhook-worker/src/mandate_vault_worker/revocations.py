"""Subscription changes made through the api reach the worker's caches within milliseconds.

The api announces `subscription:<id>` (PostgreSQL NOTIFY, sent at commit) when a subscription
is updated, has its secret rotated, or is deleted. A worker that caches subscriptions (where to
deliver, with which secrets) runs this listener beside its consumer and drops the entry at
once, so a deleted or disabled subscription gets no further attempt; after the listening
connection was lost it drops everything (notifications may have been missed), and until it is
back the cache's TTL bounds staleness.

The lifespan (main.py) runs it beside the consumer with the target cache's `forget` and
`forget_all`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from sqlalchemy.engine import make_url

from mandate_vault_shared.invalidation import Listener

SUBSCRIPTION: Final = "subscription"  # the kind the api announces


def subscription_listener(
    database_url: str, forget: Callable[[str], None], forget_all: Callable[[], None]
) -> Listener | None:
    """A listener calling `forget(id)` per changed subscription; None on SQLite (no NOTIFY:
    the cache's TTL is all there is)."""
    if make_url(database_url).get_backend_name() != "postgresql":
        return None
    return Listener(database_url, {SUBSCRIPTION: forget}, forget_all)
