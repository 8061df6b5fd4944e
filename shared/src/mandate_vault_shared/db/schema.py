"""The tables, as SQLAlchemy Core metadata. Migrations (services/api/.../migrations) create them;
nothing calls ``create_all`` at run time."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
)

# Issuer, subject and key ids are VARCHAR(512): longer ones are never stored.
MAX_IDENTIFIER_LENGTH = 512

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING)


def _ts(name: str, *, nullable: bool = False) -> Column[object]:
    return Column(name, DateTime(timezone=True), nullable=nullable)


tenants = Table(
    "tenants",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("enabled", Boolean, nullable=False, default=True),
    _ts("created_at"),
)

users = Table(
    "users",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant_id", String(64), ForeignKey("tenants.id"), nullable=False, index=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),
    Column("role", String(20), nullable=False),
    Column("enabled", Boolean, nullable=False, default=True),
    _ts("created_at"),
    _ts("updated_at"),
)

# Failed-login bookkeeping per e-mail *hash*, so unknown addresses lock out exactly like real
# ones and the answer never reveals whether an account exists.
login_throttle = Table(
    "login_throttle",
    metadata,
    Column("email_hash", String(64), primary_key=True),
    Column("failure_count", Integer, nullable=False, default=0),
    _ts("window_started_at", nullable=True),
    _ts("locked_until", nullable=True),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("user_id", String(36), ForeignKey("users.id"), nullable=False, index=True),
    Column("refresh_hash", String(64), nullable=False, unique=True),
    _ts("created_at"),
    _ts("expires_at"),
    _ts("revoked_at", nullable=True),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant_id", String(64), ForeignKey("tenants.id"), nullable=False, index=True),
    Column("name", String(200), nullable=False),
    Column("role", String(20), nullable=False),
    Column("prefix", String(16), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("created_by", String(36), nullable=True),
    _ts("created_at"),
    _ts("revoked_at", nullable=True),
)

trusted_issuers = Table(
    "trusted_issuers",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant_id", String(64), ForeignKey("tenants.id"), nullable=False),
    Column("issuer", String(MAX_IDENTIFIER_LENGTH), nullable=False),
    _ts("created_at"),
    UniqueConstraint("tenant_id", "issuer", name="uq_trusted_issuers_tenant_issuer"),
)

mandates = Table(
    "mandates",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant_id", String(64), ForeignKey("tenants.id"), nullable=False),
    Column("status", String(20), nullable=False),
    Column("verification_status", String(40), nullable=False),
    Column("verification_reason", String(500), nullable=True),
    Column("issuer", String(MAX_IDENTIFIER_LENGTH), nullable=True),
    Column("subject", String(MAX_IDENTIFIER_LENGTH), nullable=True),
    Column("key_id", String(MAX_IDENTIFIER_LENGTH), nullable=True),
    Column("scope", String(200), nullable=True),
    Column("amount_limit", Numeric(18, 2), nullable=True),
    Column("currency", String(3), nullable=True),
    _ts("expires_at", nullable=True),
    Column("vc_jwt", Text, nullable=False),
    Column("created_by", String(36), nullable=True),
    _ts("created_at"),
    _ts("updated_at"),
    _ts("verified_at"),
    _ts("revoked_at", nullable=True),
    # Increases with every change of the mandate; webhook events carry it as `sequence` so a
    # receiver can order one mandate's events itself (delivery order is not promised).
    Column("version", Integer, nullable=False, server_default="1"),
    Index("ix_mandates_tenant_created", "tenant_id", "created_at", "id"),
    Index("ix_mandates_tenant_status", "tenant_id", "status"),
    Index("ix_mandates_status_expires", "status", "expires_at"),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("mandate_id", String(36), ForeignKey("mandates.id"), nullable=False),
    _ts("created_at"),
)

# --- webhooks ---
webhook_subscriptions = Table(
    "webhook_subscriptions",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant_id", String(64), ForeignKey("tenants.id"), nullable=False, index=True),
    Column("url", String(2048), nullable=False),
    Column("event_types", String(500), nullable=False),  # comma-separated EventType values
    Column("description", String(500), nullable=True),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("disabled_reason", String(200), nullable=True),
    # Signing secrets, encrypted at rest (Fernet); never readable through the API.
    Column("secret_ciphertext", Text, nullable=False),
    Column("previous_secret_ciphertext", Text, nullable=True),
    _ts("previous_secret_expires_at", nullable=True),
    _ts("created_at"),
    _ts("updated_at"),
    # Endpoint health: when the current run of failed attempts began (NULL after a success).
    # The api disables a subscription failing for API_WEBHOOK_DISABLE_AFTER_SECONDS.
    _ts("failing_since", nullable=True),
)

# Events waiting to be published to Kafka, written in the transaction of the change that
# caused them (transactional outbox). `id` orders publication; `published_at` marks it done.
outbox = Table(
    "outbox",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("event_id", String(64), nullable=False, unique=True),
    Column("event_type", String(40), nullable=False),
    Column("tenant_id", String(64), nullable=False),
    Column("subscription_id", String(36), nullable=False),
    Column("payload", Text, nullable=False),
    Column("trace_context", String(1024), nullable=True),
    _ts("created_at"),
    _ts("published_at", nullable=True),
)
Index(
    "ix_outbox_unpublished",
    outbox.c.id,
    postgresql_where=outbox.c.published_at.is_(None),
    sqlite_where=outbox.c.published_at.is_(None),
)

# One row per event and subscription: where its delivery stands.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("event_id", String(64), primary_key=True),
    Column("subscription_id", String(36), nullable=False),
    Column("tenant_id", String(64), nullable=False),
    Column("event_type", String(40), nullable=False),
    Column("status", String(20), nullable=False),  # pending|retrying|succeeded|failed|dead_lettered
    Column("attempts", Integer, nullable=False, default=0),
    _ts("next_attempt_at", nullable=True),
    Column("last_status_code", Integer, nullable=True),
    Column("last_error", String(500), nullable=True),
    Column("payload", Text, nullable=False),
    Column("trace_context", String(1024), nullable=True),
    Column("source", String(200), nullable=True),  # topic/partition/offset of the first message
    _ts("created_at"),
    _ts("updated_at"),
    # A redelivery asked for by a tenant or an operator (`<source>:<kind>`, e.g. `api:retry`),
    # until the worker's next attempt takes it up.
    Column("redelivery", String(40), nullable=True),
    Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    Index("ix_webhook_deliveries_subscription_created", "subscription_id", "created_at"),
)

# Every attempt, for the tenant's delivery log; (event_id, attempt) makes replays harmless.
webhook_delivery_attempts = Table(
    "webhook_delivery_attempts",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("event_id", String(64), nullable=False),
    Column("subscription_id", String(36), nullable=False),
    Column("tenant_id", String(64), nullable=False),
    Column("attempt", Integer, nullable=False),
    _ts("attempted_at"),
    Column("status_code", Integer, nullable=True),
    Column("latency_ms", Numeric(10, 2), nullable=False),
    Column("error", String(500), nullable=True),
    Column("outcome", String(20), nullable=False),
    # What the endpoint answered: the first 1 KiB of its body (redacted, printable characters
    # only) and its Retry-After in seconds, when it gave one.
    Column("response_body", Text, nullable=True),
    Column("retry_after_seconds", Numeric(12, 2), nullable=True),
    UniqueConstraint("event_id", "attempt", name="uq_webhook_delivery_attempts_event_attempt"),
    Index("ix_webhook_delivery_attempts_subscription", "subscription_id", "attempted_at"),
)
