"""jwt-verifier settings: ``VERIFIER_*`` variables plus the shared, unprefixed ones."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import Field, FilePath, model_validator
from pydantic_settings import SettingsConfigDict

from mandate_vault_shared.setting_types import HostList
from mandate_vault_shared.settings import ServiceSettings
from mandate_vault_shared.ssrf import SsrfPolicy
from mandate_vault_shared.web.admission import BudgetSettings
from mandate_vault_verifier.truststore import load_truststore

KIB = 1024


class VerifierSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="VERIFIER_", env_nested_delimiter="__", extra="ignore", populate_by_name=True
    )

    port: int = 8001
    truststore_path: Path | None = None
    truststore_json: str | None = None
    max_token_bytes: int = Field(16 * KIB, ge=1 * KIB, le=256 * KIB)
    leeway_seconds: float = Field(30.0, ge=0.0, le=60.0)
    did_web_timeout_seconds: float = Field(5.0, gt=0.0, le=30.0)
    did_web_max_bytes: int = Field(64 * KIB, ge=1 * KIB, le=1024 * KIB)
    did_web_cache_ttl_seconds: float = Field(300.0, ge=0.0)
    did_web_failure_ttl_seconds: float = Field(30.0, ge=0.0)
    did_web_ca_file: FilePath | None = None
    ssrf_allowlist: HostList = Field("", description="Comma-separated hosts, IPs or CIDRs")
    admission: BudgetSettings = BudgetSettings()  # shared/web/admission.py

    @model_validator(mode="after")
    def _truststore_loads(self) -> Self:
        """Fail at start, with the entry at fault named, rather than in the lifespan."""
        if self.truststore_path is not None and self.truststore_json is not None:
            msg = "set VERIFIER_TRUSTSTORE_PATH or VERIFIER_TRUSTSTORE_JSON, not both"
            raise ValueError(msg)
        load_truststore(self.truststore_path, self.truststore_json)  # TruststoreError: ValueError
        return self

    @property
    def ssrf_allowlist_entries(self) -> tuple[str, ...]:
        return tuple(entry.strip() for entry in self.ssrf_allowlist.split(",") if entry.strip())

    @property
    def ssrf_policy(self) -> SsrfPolicy:
        """did:web documents: HTTPS always; only the allow-list opens blocked addresses."""
        return SsrfPolicy(allowlist=self.ssrf_allowlist_entries, require_https=True)

    @property
    def max_request_bytes(self) -> int:
        """The request body cap: the token plus room for the envelope and `allowed_issuers`."""
        return self.max_token_bytes + 16 * KIB
