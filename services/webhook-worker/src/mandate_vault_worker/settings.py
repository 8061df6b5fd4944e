"""webhook-worker settings: ``WORKER_*`` variables plus the shared, unprefixed ones."""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from mandate_vault_shared.kafka import KafkaSettings
from mandate_vault_shared.messages import DEAD_LETTER_SUFFIX, WEBHOOK_JOBS_TOPIC
from mandate_vault_shared.setting_types import DatabaseUrl, DelayList, FernetKeys, HostList
from mandate_vault_shared.settings import Environment, ServiceSettings
from mandate_vault_shared.ssrf import SsrfPolicy
from mandate_vault_shared.webhooks import DEV_ENCRYPTION_KEY

# Svix's schedule after the immediate first attempt: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
DEFAULT_RETRY_SCHEDULE = "5,300,1800,7200,18000,36000,36000"


class WorkerSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="WORKER_", env_nested_delimiter="__", extra="ignore", populate_by_name=True
    )

    port: int = 8002
    kafka: KafkaSettings = KafkaSettings()
    jobs_topic: str = WEBHOOK_JOBS_TOPIC
    dead_letter_topic: str = WEBHOOK_JOBS_TOPIC + DEAD_LETTER_SUFFIX
    consumer_group: str = "webhook-worker"
    session_timeout_ms: int = Field(10_000, ge=1000)
    heartbeat_interval_ms: int = Field(3_000, ge=100)
    max_poll_records: int = Field(100, ge=1)
    fetch_max_wait_ms: int = Field(
        50, ge=1, description="How long a fetch may wait for data: the idle end of the latency"
    )

    database_url: DatabaseUrl = "sqlite+aiosqlite:///./var/mandate_vault.db"
    db_pool_size: int = Field(10, ge=1, le=200)
    webhook_encryption_key: FernetKeys | None = None
    ssrf_allowlist: HostList = Field("", description="Comma-separated hosts, IPs or CIDRs")

    delivery_timeout_seconds: float = Field(10.0, gt=0, le=60)
    retry_schedule_seconds: DelayList = Field(
        DEFAULT_RETRY_SCHEDULE, description="Delays before retries 1..n, comma-separated"
    )
    retry_jitter: float = Field(0.2, ge=0, lt=1)
    retry_poll_interval_seconds: float = Field(1.0, gt=0)
    retry_batch_size: int = Field(50, ge=1)
    max_retry_after_seconds: int = Field(86_400, ge=1)
    lag_interval_seconds: float = Field(5.0, gt=0)

    # Concurrent delivery (see docs/webhooks.md)
    subscription_window: int = Field(
        16, ge=1, le=10_000, description="Attempts in flight per subscription in this worker"
    )
    max_in_flight: int = Field(
        512, ge=1, le=100_000, description="Jobs in flight in this worker; fetching pauses there"
    )
    commit_interval_seconds: float = Field(0.5, gt=0, le=60)
    breaker_failure_threshold: int = Field(
        5, ge=1, description="Consecutive failures or timeouts that open a subscription's breaker"
    )
    breaker_cooldown_seconds: float = Field(
        30.0, gt=0, description="How long an open breaker parks jobs before a half-open probe"
    )
    subscription_cache_seconds: float = Field(
        2.0, ge=0, le=300, description="How long a subscription's URL and secrets are reused"
    )
    consumer_stall_seconds: float = Field(
        60.0,
        gt=0,
        description="How long an assigned partition may go without a fetch answer, or with its "
        "position past the log end, before the consumer is rebuilt",
    )
    shutdown_grace_seconds: float = Field(
        5.0, ge=0, le=300, description="How long a stopping worker lets deliveries in flight end"
    )

    @field_validator("retry_schedule_seconds")
    @classmethod
    def _valid_schedule(cls, value: str) -> str:
        delays = [float(part) for part in value.split(",") if part.strip()]
        if any(delay < 0 for delay in delays):
            msg = "retry delays must be >= 0"
            raise ValueError(msg)
        return value

    @property
    def retry_delays(self) -> list[float]:
        return [float(part) for part in self.retry_schedule_seconds.split(",") if part.strip()]

    def required_secrets(self) -> Iterable[str]:
        return ("webhook_encryption_key",)

    @property
    def encryption_key(self) -> str:
        if self.webhook_encryption_key is None:
            return DEV_ENCRYPTION_KEY
        return self.webhook_encryption_key.get_secret_value()

    @property
    def ssrf_policy(self) -> SsrfPolicy:
        return SsrfPolicy(
            allowlist=[entry for entry in self.ssrf_allowlist.split(",") if entry.strip()],
            require_https=self.environment is Environment.PRODUCTION,
        )
