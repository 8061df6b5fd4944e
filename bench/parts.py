"""The parts every bench section measures: the harness's `System` at the services' own default
settings (only the abuse limits raised: the bench drives one tenant and one key far above
them), a tenant with an API key trusting the bench issuer, and two telemetry endpoints, one
that accepts and discards (in a process of its own: it costs the load generator nothing) and
one that black-holes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

import httpx

from mandate_vault_api.roles import Role
from mandate_vault_harness.broker import Broker
from mandate_vault_harness.issuer import Issuer
from mandate_vault_harness.net import BlackHole
from mandate_vault_harness.services import ServiceProcess
from mandate_vault_harness.sinks import DiscardServer
from mandate_vault_harness.system import System

TENANT = "bench-tenant"
API_TUNING = {
    "API_RATE_LIMIT_TENANT_PER_SECOND": "1000000",
    "API_RATE_LIMIT_API_KEY_PER_SECOND": "1000000",
}
WORKER_TUNING = {"WORKER_SESSION_TIMEOUT_MS": "2000", "WORKER_HEARTBEAT_INTERVAL_MS": "300"}


class Bench:
    def __init__(self) -> None:
        self.issuer = Issuer(did="did:web:bench-bank.example")
        self.system = System(
            issuers=[self.issuer],
            verifier=False,
            api_tuning=API_TUNING,
            worker_tuning=WORKER_TUNING,
        )
        self.sink = DiscardServer()
        self.hole = BlackHole()
        self.api_key = ""

    def __enter__(self) -> Bench:
        self.sink.start()
        self.system.__enter__()
        self.api_key = self.add_tenant(TENANT)
        self.system.start_verifier(True, None, **self.otlp_env())
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.system.__exit__(kind, error, tb)
        self.sink.stop()
        self.hole.close()

    @property
    def database_url(self) -> str:
        return self.system.database_url

    @property
    def broker(self) -> Broker:
        assert self.system.broker is not None
        return self.system.broker

    @property
    def verifier(self) -> ServiceProcess:
        assert self.system.verifier is not None
        return self.system.verifier

    def add_tenant(self, tenant: str) -> str:
        """Another tenant (its own subscriptions, its own events); returns its API key."""
        return self.system.add_tenant(tenant).keys[Role.TENANT_ADMIN]

    def otlp_env(self) -> dict[str, str]:
        return {"OTEL_EXPORTER_OTLP_ENDPOINT": self.sink.endpoint}

    def blackhole_env(self) -> dict[str, str]:
        return {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{self.hole.port}",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "2",
        }

    @contextmanager
    def api(self, extra: dict[str, str]) -> Iterator[ServiceProcess]:
        with self.system.serving(self.system.start_api(True, **extra)) as process:
            yield process

    @contextmanager
    def worker(self, extra: dict[str, str]) -> Iterator[ServiceProcess]:
        with self.system.serving(self.system.start_worker(True, **extra)) as process:
            yield process

    def token(self) -> str:
        return self.issuer.mandate(expires_in=86_400)

    def subscribe(self, api: str, url: str, api_key: str | None = None) -> dict[str, Any]:
        """A MandateCreated subscription (of the bench tenant unless `api_key` names another);
        returns it with its secret."""
        response = httpx.post(
            f"{api}/api/v1/webhooks",
            json={"url": url, "event_types": ["MandateCreated"]},
            headers={"X-API-Key": api_key or self.api_key},
        )
        response.raise_for_status()
        subscription: dict[str, Any] = response.json()
        return subscription
