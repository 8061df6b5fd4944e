"""webhook-worker settings: ``WORKER_*`` variables plus the shared, unprefixed ones."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from mandate_vault_shared.kafka import KafkaSettings
from mandate_vault_shared.messages import WEBHOOK_JOBS_TOPIC
from mandate_vault_shared.settings import ServiceSettings


class WorkerSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="WORKER_", env_nested_delimiter="__", extra="ignore", populate_by_name=True
    )

    port: int = 8002
    kafka: KafkaSettings = KafkaSettings()
    jobs_topic: str = WEBHOOK_JOBS_TOPIC
    consumer_group: str = "webhook-worker"
    session_timeout_ms: int = Field(10_000, ge=1000)
    heartbeat_interval_ms: int = Field(3_000, ge=100)
    max_poll_records: int = Field(100, ge=1)
