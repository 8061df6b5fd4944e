"""api settings: ``API_*`` variables plus the shared, unprefixed ones (see README)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from mandate_vault_shared.kafka import KafkaSettings
from mandate_vault_shared.settings import ServiceSettings


class ApiSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="API_", env_nested_delimiter="__", extra="ignore", populate_by_name=True
    )

    port: int = 8000
    kafka: KafkaSettings = KafkaSettings()
