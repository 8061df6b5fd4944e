"""The real parts `make bench` (and `make soak`) measure: PostgreSQL, the Kafka-protocol broker,
the three services as separate processes, a tenant with an API key, an issuer minting real
ES256 mandates, an OTLP endpoint that accepts and discards, and one that black-holes.

It reuses the test fixtures (tests/fixtures) so benchmarks and tests start parts the same way.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import httpx
from tests.api.issuer import Issuer, truststore_json
from tests.fixtures.broker import Broker
from tests.fixtures.postgres import create_database, drop_database, ensure_server
from tests.fixtures.services import ServiceProcess

from mandate_vault_api import directory, migrate
from mandate_vault_api.roles import Role
from mandate_vault_shared.db.engine import create_engine

TENANT = "bench-tenant"


class _Discard(BaseHTTPRequestHandler):
    """An OTLP endpoint that accepts and drops everything, costing the machine little."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


class BenchStack:
    def __init__(self) -> None:
        self.issuer = Issuer(did="did:web:bench-bank.example")
        self.topic = f"bench-jobs-{uuid.uuid4().hex[:8]}"
        self.database_url = ""
        self.api_key = ""
        self.broker = Broker()
        self._sink = ThreadingHTTPServer(("127.0.0.1", 0), _Discard)
        self._hole = socket.socket()
        self._verifier: ServiceProcess | None = None

    def __enter__(self) -> BenchStack:
        ensure_server()
        self.database_url = asyncio.run(create_database())
        migrate.upgrade(self.database_url)
        self.api_key = asyncio.run(self._bootstrap())
        self.broker.start()
        self.broker.create_topic(self.topic, 4)
        threading.Thread(target=self._sink.serve_forever, daemon=True).start()
        self._hole.bind(("127.0.0.1", 0))
        self._hole.listen(1)
        verifier_env = {"VERIFIER_TRUSTSTORE_JSON": truststore_json(self.issuer), **self.otlp_env()}
        self._verifier = ServiceProcess("jwt-verifier", verifier_env).start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._verifier is not None:
            self._verifier.stop()
        self.broker.stop()
        self._sink.shutdown()
        self._hole.close()
        asyncio.run(drop_database(self.database_url))

    async def _bootstrap(self, tenant: str = TENANT) -> str:
        """A tenant trusting the bench issuer; returns its API key."""
        engine = create_engine(self.database_url)
        try:
            async with engine.begin() as conn:
                now = datetime.now(UTC)
                await directory.create_tenant(conn, tenant, tenant.title(), now)
                await directory.add_trusted_issuer(conn, tenant, self.issuer.did, now)
                _, key = await directory.create_api_key(
                    conn, tenant, "bench", Role.TENANT_ADMIN, "bench", now
                )
        finally:
            await engine.dispose()
        return key

    def add_tenant(self, tenant: str) -> str:
        """Another tenant (its own subscriptions, its own events); returns its API key."""
        return asyncio.run(self._bootstrap(tenant))

    def otlp_env(self) -> dict[str, str]:
        return {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{self._sink.server_address[1]}"}

    def blackhole_env(self) -> dict[str, str]:
        return {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{self._hole.getsockname()[1]}",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "2",
        }

    def _api_env(self, extra: dict[str, str]) -> dict[str, str]:
        assert self._verifier is not None
        return {
            "API_DATABASE_URL": self.database_url,
            "API_VERIFIER_URL": self._verifier.url,
            "API_KAFKA__BOOTSTRAP_SERVERS": self.broker.bootstrap,
            "API_JOBS_TOPIC": self.topic,
            "API_SSRF_ALLOWLIST": "127.0.0.1",
            # The bench drives one tenant and one key far above the default abuse limits.
            "API_RATE_LIMIT_TENANT_PER_SECOND": "1000000",
            "API_RATE_LIMIT_API_KEY_PER_SECOND": "1000000",
            **extra,
        }

    @property
    def verifier(self) -> ServiceProcess:
        assert self._verifier is not None
        return self._verifier

    @contextmanager
    def api(self, extra: dict[str, str]) -> Iterator[ServiceProcess]:
        process = ServiceProcess("api", self._api_env(extra)).start()
        try:
            yield process
        finally:
            process.stop()
            process.log_path.unlink(missing_ok=True)

    @contextmanager
    def worker(self, extra: dict[str, str]) -> Iterator[ServiceProcess]:
        env = {
            "WORKER_DATABASE_URL": self.database_url,
            "WORKER_KAFKA__BOOTSTRAP_SERVERS": self.broker.bootstrap,
            "WORKER_JOBS_TOPIC": self.topic,
            "WORKER_CONSUMER_GROUP": f"bench-{self.topic}",
            "WORKER_SSRF_ALLOWLIST": "127.0.0.1",
            "WORKER_SESSION_TIMEOUT_MS": "2000",
            "WORKER_HEARTBEAT_INTERVAL_MS": "300",
            **extra,
        }
        process = ServiceProcess("webhook-worker", env).start()
        try:
            yield process
        finally:
            process.stop()
            process.log_path.unlink(missing_ok=True)

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
