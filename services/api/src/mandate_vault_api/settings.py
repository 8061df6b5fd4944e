"""api settings: ``API_*`` variables plus the shared, unprefixed ones (see README)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from mandate_vault_api.credentials import SigningKeys
from mandate_vault_api.ratelimit import Limit
from mandate_vault_shared.kafka import KafkaSettings
from mandate_vault_shared.messages import WEBHOOK_JOBS_TOPIC
from mandate_vault_shared.setting_types import (
    DatabaseUrl,
    FernetKeys,
    HostList,
    RedisUrl,
    http_url_check,
)
from mandate_vault_shared.settings import Environment, ServiceSettings
from mandate_vault_shared.ssrf import SsrfPolicy
from mandate_vault_shared.web.admission import BudgetSettings
from mandate_vault_shared.webhooks import DEV_ENCRYPTION_KEY

DEV_SIGNING_KEY = "dev-only-signing-key-change-me-0123456789abcdef"
REDELIVERY_SCOPE = "redelivery"  # rate-limit scope of retry and recover, per tenant


class ApiSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="API_", env_nested_delimiter="__", extra="ignore", populate_by_name=True
    )

    port: int = 8000
    database_url: DatabaseUrl = "sqlite+aiosqlite:///./var/mandate_vault.db"
    db_pool_size: int = Field(20, ge=1, le=200)
    db_pool_timeout_seconds: float = Field(5.0, gt=0)
    db_create_pool_size: int = Field(20, ge=1, le=200)
    verifier_url: Annotated[str, http_url_check("http://jwt-verifier:8001")] = (
        "http://127.0.0.1:8001"
    )
    verifier_timeout_seconds: float = Field(3.0, gt=0, le=60)
    kafka: KafkaSettings = KafkaSettings()

    token_signing_key: SecretStr | None = None
    access_token_ttl_seconds: int = Field(900, ge=60, le=86_400)
    refresh_token_ttl_seconds: int = Field(7 * 86_400, ge=300)
    lockout_threshold: int = Field(5, ge=1)
    lockout_window_seconds: int = Field(900, ge=1)
    lockout_duration_seconds: int = Field(900, ge=1)

    auth_cache_seconds: float = Field(5.0, ge=0, le=60)
    rate_limit_tenant_per_second: float = Field(500.0, gt=0)
    rate_limit_api_key_per_second: float = Field(250.0, gt=0)
    rate_limit_login_account_per_minute: float = Field(20.0, gt=0)
    rate_limit_login_client_per_minute: float = Field(60.0, gt=0)
    rate_limit_redelivery_per_minute: float = Field(
        60.0, gt=0, description="Redelivery requests (retry, recover) per tenant and minute"
    )
    redis_url: RedisUrl | None = Field(
        None, description="redis:// or rediss:// URL; set to share rate limits across replicas"
    )
    redis_key_prefix: str = Field("mv", min_length=1, description="prefix of every Redis key")
    redis_timeout_seconds: float = Field(0.25, gt=0, le=5)
    max_token_bytes: int = Field(16_384, ge=1024)
    page_size_default: int = Field(50, ge=1)
    page_size_max: int = Field(200, ge=1)
    expiry_sweep_interval_seconds: float = Field(30.0, gt=0)
    gauge_refresh_interval_seconds: float = Field(15.0, gt=0)

    webhook_encryption_key: FernetKeys | None = None
    webhook_secret_rotation_seconds: int = Field(86_400, ge=0)
    ssrf_allowlist: HostList = Field("", description="Comma-separated hosts, IPs or CIDRs")
    jobs_topic: str = WEBHOOK_JOBS_TOPIC
    outbox_poll_interval_seconds: float = Field(0.25, gt=0)
    outbox_batch_size: int = Field(200, ge=1, le=5000)
    outbox_stall_seconds: float = Field(60.0, gt=0)
    outbox_retention_days: int = Field(7, ge=1)
    webhook_disable_after_seconds: float = Field(
        5 * 86_400,
        gt=0,
        description="A subscription whose endpoint has failed every attempt for this long is "
        "disabled (checked every API_EXPIRY_SWEEP_INTERVAL_SECONDS)",
    )
    # Reconciliation (reconcile.py): published events the worker never recorded are republished.
    outbox_reconcile_grace_seconds: float = Field(
        300.0,
        gt=0,
        description="How long a published event may lack a delivery-log row before it is taken "
        "for lost by the broker and published again (far above the worker's delivery timeout)",
    )
    outbox_reconcile_interval_seconds: float = Field(30.0, gt=0)
    outbox_reconcile_batch_size: int = Field(500, ge=1, le=5000)
    outbox_reconcile_lookback_seconds: float = Field(
        3600.0, gt=0, description="How far back a newly elected replica starts reconciling"
    )

    # Admission control (shared/web/admission.py): every route but login, and login (Argon2),
    # whose small budget keeps a login storm from taking the CPU that creates need.
    admission: BudgetSettings = BudgetSettings()
    login_admission: BudgetSettings = BudgetSettings(
        max_concurrency=2,
        min_concurrency=1,
        queue_size=16,
        queue_timeout_ms=1000,
        overload_queue_timeout_ms=100,
        adaptive=False,
    )

    @model_validator(mode="after")
    def _reconcile_window(self) -> ApiSettings:
        grace = self.outbox_reconcile_grace_seconds
        grace_name = self.variable_name(("outbox_reconcile_grace_seconds",))
        if self.outbox_reconcile_lookback_seconds < grace:
            lookback = self.variable_name(("outbox_reconcile_lookback_seconds",))
            msg = f"{lookback}: must be at least {grace_name} ({grace:g})"
            raise ValueError(msg)
        if grace >= self.outbox_retention_days * 86_400:
            retention = self.variable_name(("outbox_retention_days",))
            msg = f"{grace_name}: must be shorter than {retention} ({self.outbox_retention_days} d)"
            raise ValueError(msg)
        return self

    @field_validator("token_signing_key")
    @classmethod
    def _signing_keys(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            SigningKeys.parse(value.get_secret_value())  # raises ValueError, named per field
        return value

    def required_secrets(self) -> Iterable[str]:
        return ("token_signing_key", "webhook_encryption_key")

    @property
    def encryption_key(self) -> str:
        if self.webhook_encryption_key is None:
            return DEV_ENCRYPTION_KEY
        return self.webhook_encryption_key.get_secret_value()

    @property
    def ssrf_policy(self) -> SsrfPolicy:
        """https only in production; the allow-list is the one explicit way to loopback."""
        return SsrfPolicy(
            allowlist=[entry for entry in self.ssrf_allowlist.split(",") if entry.strip()],
            require_https=self.environment is Environment.PRODUCTION,
        )

    @property
    def rate_limits(self) -> dict[str, Limit]:
        """Scope -> limit; bursts allow twice the steady rate."""
        tenant, key = self.rate_limit_tenant_per_second, self.rate_limit_api_key_per_second
        return {
            "tenant": Limit(tenant, tenant * 2),
            "api_key": Limit(key, key * 2),
            "login_account": Limit.per_minute(self.rate_limit_login_account_per_minute),
            "login_client": Limit.per_minute(self.rate_limit_login_client_per_minute),
            REDELIVERY_SCOPE: Limit.per_minute(self.rate_limit_redelivery_per_minute),
        }

    @property
    def signing_keys(self) -> SigningKeys:
        """The access-token keys (the first signs); a fixed development key only where secrets
        are optional."""
        if self.token_signing_key is None:
            return SigningKeys.parse(DEV_SIGNING_KEY)
        return SigningKeys.parse(self.token_signing_key.get_secret_value())
