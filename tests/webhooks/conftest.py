"""The whole webhook path on real parts: api and worker processes, PostgreSQL, the broker, the
verifier, and a receiver that checks every signature."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from mandate_vault_api import directory, migrate
from mandate_vault_api.roles import Role
from mandate_vault_harness.broker import Broker
from mandate_vault_harness.issuer import Issuer, truststore_json
from mandate_vault_harness.otlp import OtlpReceiver
from mandate_vault_harness.otlp import start_receiver as start_otlp
from mandate_vault_harness.postgres import create_database, drop_database
from mandate_vault_harness.receiver import Receiver, Script, start_receiver
from mandate_vault_harness.services import ServiceProcess
from mandate_vault_harness.system import QUICK_WORKER
from mandate_vault_shared.db.engine import create_engine

TENANT = "acme-corp"
EMAIL = "ops@acme.example"
PASSWORD = "webhook-tests-passphrase"
PARTITIONS = 4


@dataclass
class Stack:
    database_url: str
    broker: Broker
    topic: str
    verifier: ServiceProcess
    receiver: Receiver
    otlp: OtlpReceiver | None
    worker_overrides: dict[str, str] = field(default_factory=dict)
    api: ServiceProcess | None = None
    workers: list[ServiceProcess] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    def otel(self) -> dict[str, str]:
        if self.otlp is None:
            return {}
        return {"OTEL_EXPORTER_OTLP_ENDPOINT": self.otlp.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"}

    def start_api(self, **overrides: str) -> ServiceProcess:
        env = {
            "API_DATABASE_URL": self.database_url,
            "API_VERIFIER_URL": self.verifier.url,
            "API_KAFKA__BOOTSTRAP_SERVERS": self.broker.bootstrap,
            "API_JOBS_TOPIC": self.topic,
            "API_SSRF_ALLOWLIST": "127.0.0.1",
            "API_GAUGE_REFRESH_INTERVAL_SECONDS": "0.2",
            **self.otel(),
            **overrides,
        }
        self.api = ServiceProcess("api", env).start()
        login = httpx.post(
            f"{self.api.url}/api/v1/auth/login", json={"email": EMAIL, "password": PASSWORD}
        )
        self.headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        return self.api

    def worker_env(self, **overrides: str) -> dict[str, str]:
        return {
            "WORKER_DATABASE_URL": self.database_url,
            "WORKER_KAFKA__BOOTSTRAP_SERVERS": self.broker.bootstrap,
            "WORKER_JOBS_TOPIC": self.topic,
            "WORKER_DEAD_LETTER_TOPIC": f"{self.topic}.dlq",
            "WORKER_CONSUMER_GROUP": f"group-{self.topic}",
            "WORKER_SSRF_ALLOWLIST": "127.0.0.1",
            **QUICK_WORKER,
            **self.otel(),
            **self.worker_overrides,
            **overrides,
        }

    def start_worker(self, **overrides: str) -> ServiceProcess:
        worker = ServiceProcess("webhook-worker", self.worker_env(**overrides)).start()
        self.workers.append(worker)
        return worker

    @property
    def client(self) -> httpx.Client:
        assert self.api is not None
        return httpx.Client(base_url=self.api.url, headers=self.headers, timeout=10)

    def subscribe(
        self, path: str, events: list[str] | None = None, script: Script | None = None
    ) -> dict[str, Any]:
        with self.client as client:
            response = client.post(
                "/api/v1/webhooks",
                json={"url": self.receiver.url(path), "event_types": events or ["MandateCreated"]},
            )
        assert response.status_code == 201, response.text
        body = response.json()
        self.receiver.register(path, body["secret"], script)
        return body

    def create_mandate(self, token: str) -> dict[str, Any]:
        with self.client as client:
            response = client.post("/api/v1/mandates", json={"vc_jwt": token})
        assert response.status_code == 201, response.text
        return response.json()

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        if self.api is not None:
            self.api.stop()


@pytest.fixture(scope="session")
def bank() -> Issuer:
    return Issuer()


async def bootstrap(database_url: str, issuer: str) -> None:
    """Migrate and create the tenant, its admin and its trusted issuer (in-process: fast)."""
    await asyncio.to_thread(migrate.upgrade, database_url)
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            now = datetime.now(UTC)
            await directory.create_tenant(conn, TENANT, "Acme", now)
            await directory.create_user(conn, TENANT, EMAIL, PASSWORD, Role.ADMIN, now)
            await directory.add_trusted_issuer(conn, TENANT, issuer, now)
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
async def module_database(postgres_server: None) -> AsyncIterator[str]:
    url = await create_database()
    yield url
    await drop_database(url)


@pytest.fixture(scope="module")
async def stack(
    request: pytest.FixtureRequest,
    module_database: str,
    broker: Broker,
    bank: Issuer,
) -> AsyncIterator[Stack]:
    """One api and one worker per test module; tests tell their deliveries apart by path.

    A module may set WORKER_OVERRIDES (worker env), WITH_OTLP (export to a receiver) and
    TOPIC_PARTITIONS (default PARTITIONS).
    """
    await bootstrap(module_database, bank.did)
    topic = f"jobs-{uuid.uuid4().hex[:10]}"
    broker.create_topic(topic, getattr(request.module, "TOPIC_PARTITIONS", PARTITIONS))
    receiver, server = start_receiver()
    otlp, otlp_server = (
        start_otlp() if getattr(request.module, "WITH_OTLP", False) else (None, None)
    )
    exports = {"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint} if otlp else {}
    verifier = ServiceProcess(
        "jwt-verifier", {"VERIFIER_TRUSTSTORE_JSON": truststore_json(bank), **exports}
    ).start()
    instance = Stack(module_database, broker, topic, verifier, receiver, otlp)
    instance.worker_overrides = dict(getattr(request.module, "WORKER_OVERRIDES", {}))
    instance.start_api(API_EXPIRY_SWEEP_INTERVAL_SECONDS="0.2")
    instance.start_worker()
    yield instance
    instance.stop()
    verifier.stop()
    server.shutdown()
    if otlp_server is not None:
        otlp_server.shutdown()
