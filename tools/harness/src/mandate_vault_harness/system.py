"""The whole system on real parts, the one launcher tests, scenarios and benchmarks share:
PostgreSQL, the Kafka-protocol broker, a webhook receiver, and the three services as separate
processes (`ServiceProcess`, one uvicorn each, as in production).

A caller opens a `System` (a context manager), adds tenants (in-process, straight into the
database: fast), starts the services it needs with the settings it wants, and closes it, which
stops every process it started and drops the database it created. A database URL (PostgreSQL
or SQLite) or a running `Broker` may be handed in instead: the System then uses them and leaves
them as they were. Settings come in three layers: the wiring (where the database, the broker,
the topic and the verifier are), the tuning (`api_tuning`, `worker_tuning`: by default quick,
test-friendly values; a benchmark passes `{}` to measure the services' own defaults) and each
start's overrides.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import ThreadingHTTPServer
from types import TracebackType
from typing import Any

import asyncpg
import httpx

from mandate_vault_api import directory, migrate
from mandate_vault_api.roles import Role
from mandate_vault_harness.broker import Broker, MotoS3
from mandate_vault_harness.issuer import Issuer, truststore_json
from mandate_vault_harness.postgres import create_database, drop_database, ensure_server
from mandate_vault_harness.receiver import Receiver, Script, start_receiver
from mandate_vault_harness.services import ServiceProcess
from mandate_vault_shared.db.engine import create_engine

PASSWORD = "harness-passphrase-0123"  # noqa: S105 - every throwaway user's password
ROLES = (Role.READONLY, Role.MEMBER, Role.TENANT_ADMIN, Role.ADMIN)
KEEP_LOGS = "RELIABILITY_KEEP_LOGS"  # set to keep the services' log files for a post-mortem

# Worker settings that make retries, group changes and lag samples second-scale.
QUICK_WORKER = {
    "WORKER_SESSION_TIMEOUT_MS": "2000",
    "WORKER_HEARTBEAT_INTERVAL_MS": "300",
    "WORKER_RETRY_SCHEDULE_SECONDS": "0.5,1",
    "WORKER_RETRY_JITTER": "0",
    "WORKER_RETRY_POLL_INTERVAL_SECONDS": "0.1",
    "WORKER_DELIVERY_TIMEOUT_SECONDS": "2",
    "WORKER_LAG_INTERVAL_SECONDS": "0.5",
}
# Api settings that make gauges and the expiry sweep second-scale (limits stay the defaults).
QUICK_API = {
    "API_GAUGE_REFRESH_INTERVAL_SECONDS": "0.2",
    "API_EXPIRY_SWEEP_INTERVAL_SECONDS": "0.2",
}
# The default tuning: several replicas share one PostgreSQL server, and one tenant is driven
# far above the abuse limits unless a scenario tests them.
SCENARIO_API = {
    "API_DB_POOL_SIZE": "10",
    "API_AUTH_CACHE_SECONDS": "5",
    "API_RATE_LIMIT_TENANT_PER_SECOND": "1000000",
    "API_RATE_LIMIT_API_KEY_PER_SECOND": "1000000",
    "API_RATE_LIMIT_LOGIN_ACCOUNT_PER_MINUTE": "1000000",
    "API_RATE_LIMIT_LOGIN_CLIENT_PER_MINUTE": "1000000",
    "API_RATE_LIMIT_REDELIVERY_PER_MINUTE": "1000000",
}
SCENARIO_WORKER = {
    **QUICK_WORKER,
    "WORKER_DB_POOL_SIZE": "5",
    "WORKER_RETRY_SCHEDULE_SECONDS": "0.5,1,2",
}


@dataclass
class Tenant:
    id: str
    keys: dict[Role, str] = field(default_factory=dict)  # an API key per role
    key_ids: dict[Role, str] = field(default_factory=dict)
    emails: dict[Role, str] = field(default_factory=dict)  # a user per role (password PASSWORD)

    def headers(self, role: Role = Role.TENANT_ADMIN) -> dict[str, str]:
        return {"X-API-Key": self.keys[role]}


def worker_wiring(database_url: str, bootstrap: str, topic: str) -> dict[str, str]:
    """A webhook-worker's environment for one database, broker and topic (and its DLQ)."""
    return {
        "WORKER_DATABASE_URL": database_url,
        "WORKER_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "WORKER_JOBS_TOPIC": topic,
        "WORKER_DEAD_LETTER_TOPIC": f"{topic}.dlq",
        "WORKER_CONSUMER_GROUP": f"group-{topic}",
        "WORKER_SSRF_ALLOWLIST": "127.0.0.1",
    }


def asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


class System:
    def __init__(
        self,
        *,
        issuers: list[Issuer] | None = None,
        truststore: str | None = None,
        database_url: str | None = None,
        durable_broker: bool = False,
        partitions: int = 4,
        verifier: bool = True,
        broker: Broker | bool = True,
        service_env: dict[str, str] | None = None,
        api_tuning: dict[str, str] | None = None,
        worker_tuning: dict[str, str] | None = None,
    ) -> None:
        """`broker`: True starts one (on moto S3 when `durable_broker`), False none, a `Broker`
        is used as it is; `service_env` goes to every service (e.g. where telemetry goes)."""
        self.issuers = issuers if issuers is not None else [Issuer()]
        self.truststore = truststore or truststore_json(*self.issuers)
        self.database_url = database_url or ""
        self._own_database = database_url is None
        self.durable_broker = durable_broker
        self.partitions = partitions
        self._with_verifier = verifier
        self._own_broker = broker is True
        self.service_env = service_env or {}
        self.api_tuning = SCENARIO_API if api_tuning is None else api_tuning
        self.worker_tuning = SCENARIO_WORKER if worker_tuning is None else worker_tuning
        self.topic = f"jobs-{uuid.uuid4().hex[:10]}"
        self.s3: MotoS3 | None = None
        self.broker: Broker | None = broker if isinstance(broker, Broker) else None
        self._receiver: Receiver | None = None
        self._receiver_server: ThreadingHTTPServer | None = None
        self.verifier: ServiceProcess | None = None
        self.apis: list[ServiceProcess] = []
        self.workers: list[ServiceProcess] = []
        self.retired: list[ServiceProcess] = []  # stopped or killed processes (their logs count)
        self.tenants: dict[str, Tenant] = {}

    # --- lifecycle --------------------------------------------------------------------------

    def __enter__(self) -> System:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        if self._with_verifier:
            self.start_verifier(wait=False)  # its start overlaps the database's; see ready()
        if self._own_database:
            ensure_server()
            self.database_url = asyncio.run(create_database())
        migrate.upgrade(self.database_url)
        if self._own_broker:
            self.broker = self._start_broker()
        if self.broker is not None:
            self.broker.create_topic(self.topic, self.partitions)
        self._receiver, self._receiver_server = start_receiver()

    def _start_broker(self) -> Broker:
        if self.durable_broker:
            self.s3 = MotoS3()
            self.s3.start()
            broker = Broker(storage="s3://tansu/", extra_env=self.s3.env)
        else:
            broker = Broker()
        broker.start()
        return broker

    def close(self) -> None:
        for process in [*self.workers, *self.apis]:
            process.stop()
        if self.verifier is not None:
            self.verifier.stop()
        if self._receiver_server is not None:
            self._receiver_server.shutdown()
        if self.broker is not None and self._own_broker:
            self.broker.stop()
        if self.s3 is not None:
            self.s3.stop()
        if self._own_database and self.database_url:
            asyncio.run(drop_database(self.database_url))
        if not os.environ.get(KEEP_LOGS):
            for process in self.processes():
                process.log_path.unlink(missing_ok=True)

    @property
    def bootstrap_servers(self) -> str:
        """The broker's address (a System started with one)."""
        if self.broker is None:
            msg = "this System runs without a broker"
            raise RuntimeError(msg)
        return self.broker.bootstrap

    @property
    def receiver(self) -> Receiver:
        """The webhook receiver (a subscriber checking every signature) of a started System."""
        if self._receiver is None:
            msg = "the System is not started"
            raise RuntimeError(msg)
        return self._receiver

    def processes(self) -> list[ServiceProcess]:
        found = [*self.apis, *self.workers, *self.retired]
        if self.verifier is not None:
            found.append(self.verifier)
        return found

    # --- services ---------------------------------------------------------------------------

    def ready(self, timeout: float = 60.0) -> None:
        """Wait until every running service answers /healthz (they start in parallel)."""
        for process in [self.verifier, *self.apis, *self.workers]:
            if process is not None and process.running:
                process.wait_healthy(timeout)

    def start_verifier(
        self, wait: bool = True, port: int | None = None, **env: str
    ) -> ServiceProcess:
        """The jwt-verifier; `port` restarts it where the api already looks for it."""
        self.verifier = ServiceProcess(
            "jwt-verifier",
            {"VERIFIER_TRUSTSTORE_JSON": self.truststore, **self.service_env, **env},
        )
        if port is not None:
            self.verifier.port = port
            self.verifier.env["VERIFIER_PORT"] = str(port)
        return self.verifier.start(wait=wait)

    def api_env(self, **overrides: str) -> dict[str, str]:
        assert self.verifier is not None or "API_VERIFIER_URL" in overrides
        env = {
            "API_DATABASE_URL": self.database_url,
            "API_VERIFIER_URL": self.verifier.url if self.verifier else "",
            "API_SSRF_ALLOWLIST": "127.0.0.1",
        }
        if self.broker is not None:
            env["API_KAFKA__BOOTSTRAP_SERVERS"] = self.broker.bootstrap
            env["API_JOBS_TOPIC"] = self.topic
        return {**env, **self.api_tuning, **self.service_env, **overrides}

    def start_services(self) -> None:
        """One api and one worker, started side by side; returns once every service is up."""
        self.start_api(wait=False)
        self.start_worker(wait=False)
        self.ready()

    def start_api(self, wait: bool = True, **overrides: str) -> ServiceProcess:
        process = ServiceProcess("api", self.api_env(**overrides))
        self.apis.append(process)  # before start: a process that never got healthy is stopped too
        return process.start(wait=wait)

    @property
    def api(self) -> ServiceProcess:
        return self.apis[0]

    def worker_env(self, **overrides: str) -> dict[str, str]:
        assert self.broker is not None
        wiring = worker_wiring(self.database_url, self.broker.bootstrap, self.topic)
        return {**wiring, **self.worker_tuning, **self.service_env, **overrides}

    def start_worker(self, wait: bool = True, **overrides: str) -> ServiceProcess:
        process = ServiceProcess("webhook-worker", self.worker_env(**overrides))
        self.workers.append(process)
        return process.start(wait=wait)

    def kill_worker(self, process: ServiceProcess) -> None:
        process.kill()
        self.workers.remove(process)
        self.retired.append(process)

    def kill_api(self, process: ServiceProcess) -> None:
        """SIGKILL an api replica (its database connections and advisory lock go with it)."""
        process.kill()
        self.apis.remove(process)
        self.retired.append(process)

    @contextmanager
    def serving(self, process: ServiceProcess) -> Iterator[ServiceProcess]:
        """`process` (one this System started) for the block, retired after it."""
        try:
            yield process
        finally:
            self.retire(process)

    def retire(self, process: ServiceProcess) -> None:
        """Stop a process for good (SIGTERM); its log still counts."""
        process.stop()
        for group in (self.apis, self.workers):
            if process in group:
                group.remove(process)
        if process is self.verifier:
            self.verifier = None
        self.retired.append(process)

    # --- data -------------------------------------------------------------------------------

    def add_tenant(
        self,
        tenant_id: str | None = None,
        *,
        issuers: list[str] | None = None,
        roles: tuple[Role, ...] = (Role.TENANT_ADMIN,),
        users: bool = False,
    ) -> Tenant:
        """A tenant trusting `issuers` (default: the system's), with an API key per role."""
        tenant = Tenant(tenant_id or f"t-{uuid.uuid4().hex[:10]}")
        trusted = issuers if issuers is not None else [issuer.did for issuer in self.issuers]

        async def create() -> None:
            engine = create_engine(self.database_url)
            try:
                async with engine.begin() as conn:
                    now = datetime.now(UTC)
                    await directory.create_tenant(conn, tenant.id, tenant.id.title(), now)
                    for did in trusted:
                        await directory.add_trusted_issuer(conn, tenant.id, did, now)
                    for role in roles:
                        key_id, key = await directory.create_api_key(
                            conn, tenant.id, f"reliability-{role.value}", role, "reliability", now
                        )
                        tenant.keys[role], tenant.key_ids[role] = key, key_id
                        if users:
                            email = f"{role.value}@{tenant.id}.example"
                            await directory.create_user(conn, tenant.id, email, PASSWORD, role, now)
                            tenant.emails[role] = email
            finally:
                await engine.dispose()

        asyncio.run(create())
        self.tenants[tenant.id] = tenant
        return tenant

    def add_api_keys(self, tenant: Tenant, count: int, role: Role) -> list[tuple[str, str]]:
        """`count` more API keys of `tenant` with `role`: (key id, key) each."""

        async def create() -> list[tuple[str, str]]:
            engine = create_engine(self.database_url)
            try:
                async with engine.begin() as conn:
                    now = datetime.now(UTC)
                    return [
                        await directory.create_api_key(
                            conn, tenant.id, f"extra-{n}", role, "reliability", now
                        )
                        for n in range(count)
                    ]
            finally:
                await engine.dispose()

        return asyncio.run(create())

    def subscribe(
        self,
        tenant: Tenant,
        path: str,
        events: list[str] | None = None,
        *,
        api: ServiceProcess | None = None,
        url: str | None = None,
        script: Script | None = None,
    ) -> dict[str, Any]:
        """A webhook subscription to the receiver (or to `url`), registered with its secret
        (and `script`, the receiver's answers to it)."""
        target = url or self.receiver.url(path)
        with self.client(tenant, api=api) as client:
            response = client.post(
                "/api/v1/webhooks",
                json={"url": target, "event_types": events or ["MandateCreated"]},
            )
        if response.status_code != 201:
            msg = f"subscribe {target}: {response.status_code} {response.text}"
            raise RuntimeError(msg)
        body: dict[str, Any] = response.json()
        self.receiver.register(path, body["secret"], script)
        return body

    def create_mandate(
        self, tenant: Tenant, token: str, *, api: ServiceProcess | None = None
    ) -> dict[str, Any]:
        """POST a mandate JWT; the stored mandate (anything but a 201 raises)."""
        with self.client(tenant, api=api) as client:
            response = client.post("/api/v1/mandates", json={"vc_jwt": token})
        if response.status_code != 201:
            msg = f"create mandate: {response.status_code} {response.text}"
            raise RuntimeError(msg)
        body: dict[str, Any] = response.json()
        return body

    def client(
        self, tenant: Tenant, *, role: Role = Role.TENANT_ADMIN, api: ServiceProcess | None = None
    ) -> httpx.Client:
        """An HTTP client of the api acting as `tenant`'s API key of `role`."""
        base = (api or self.api).url
        return httpx.Client(base_url=base, headers=tenant.headers(role), timeout=10)

    def login(
        self, email: str, password: str = PASSWORD, *, api: ServiceProcess | None = None
    ) -> dict[str, str]:
        """Bearer headers of a user (one of a tenant's `emails`)."""
        response = httpx.post(
            f"{(api or self.api).url}/api/v1/auth/login",
            json={"email": email, "password": password},
            timeout=10,
        )
        if response.status_code != 200:
            msg = f"login {email}: {response.status_code} {response.text}"
            raise RuntimeError(msg)
        return {"Authorization": f"Bearer {response.json()['access_token']}"}

    def query(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        async def run() -> list[asyncpg.Record]:
            conn = await asyncpg.connect(asyncpg_dsn(self.database_url))
            try:
                return list(await conn.fetch(sql, *args))
            finally:
                await conn.close()

        return asyncio.run(run())

    def scalar(self, sql: str, *args: Any) -> Any:
        rows = self.query(sql, *args)
        return rows[0][0] if rows else None


@contextmanager
def http(
    base_url: str, headers: dict[str, str] | None = None, timeout: float = 10
) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, headers=headers or {}, timeout=timeout) as client:
        yield client


def delivered_mandate_ids(receiver: Receiver, path: str) -> dict[str, set[str]]:
    """mandate id -> the webhook-ids it arrived under (verified deliveries only)."""
    seen: dict[str, set[str]] = {}
    for delivery in receiver.at(path):
        mandate_id = json.loads(delivery.body)["data"]["id"]
        seen.setdefault(mandate_id, set()).add(delivery.webhook_id)
    return seen


def publishing_api(apis: list[ServiceProcess]) -> ServiceProcess | None:
    """The elected replica (relay, sweeps, gauges): the only one reporting `outbox_backlog`."""
    for api in apis:
        response = httpx.get(f"{api.url}/api/v1/metrics", timeout=5)
        if any(line.startswith("outbox_backlog") for line in response.text.splitlines()):
            return api
    return None


def count_where(items: list[Any], predicate: Callable[[Any], bool]) -> int:
    return sum(1 for item in items if predicate(item))


def error_records(processes: list[ServiceProcess]) -> list[dict[str, Any]]:
    """The ERROR/CRITICAL log records of `processes` (JSON lines), for a failure's cause."""
    found = []
    for process in processes:
        if not process.log_path.exists():
            continue
        for record in process.json_logs():
            if str(record.get("level", "")).lower() in ("error", "critical"):
                found.append({"service": process.service, **record})
    return found


def error_causes(processes: list[ServiceProcess]) -> dict[str, int]:
    """Distinct `service: event error_type error` of the error records, with their counts."""
    causes: dict[str, int] = {}
    for record in error_records(processes):
        detail = " ".join(
            str(record[k])
            for k in ("event", "route", "status", "error_type", "error")
            if record.get(k) is not None
        )
        key = f"{record['service']}: {detail}"[:300]
        causes[key] = causes.get(key, 0) + 1
    return causes


def server_errors(processes: list[ServiceProcess], *, include_503: bool = False) -> dict[str, int]:
    """`service METHOD route status error_type` of every 5xx the services logged, counted."""
    found: dict[str, int] = {}
    for record in error_records(processes):
        status = record.get("status")
        if record.get("event") != "http_request_error" or not isinstance(status, int):
            continue
        if status == 503 and not include_503:
            continue
        key = (
            f"{record['service'].removeprefix('mandate-vault-')} {record.get('method')} "
            f"{record.get('route')} {status} {record.get('error_type')}"
        )
        found[key] = found.get(key, 0) + 1
    return dict(sorted(found.items()))


def where_events_stopped(system: System, mandate_ids: set[str]) -> dict[str, int]:
    """For undelivered mandates: published to Kafka or not, and the worker's record of them."""
    if not mandate_ids:
        return {}
    rows = system.query(
        "SELECT o.published_at IS NOT NULL AS published, d.status AS delivery "
        "FROM outbox o LEFT JOIN webhook_deliveries d ON d.event_id = o.event_id "
        "WHERE (o.payload::json -> 'data' ->> 'id') = ANY($1::text[])",
        list(mandate_ids),
    )
    states: dict[str, int] = {}
    for row in rows:
        key = f"published={row['published']} delivery={row['delivery']}"
        states[key] = states.get(key, 0) + 1
    return states
