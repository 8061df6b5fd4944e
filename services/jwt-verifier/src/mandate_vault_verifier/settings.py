"""jwt-verifier settings: ``VERIFIER_*`` variables plus the shared, unprefixed ones."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from mandate_vault_shared.settings import ServiceSettings


class VerifierSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="VERIFIER_", env_nested_delimiter="__", extra="ignore", populate_by_name=True
    )

    port: int = 8001
