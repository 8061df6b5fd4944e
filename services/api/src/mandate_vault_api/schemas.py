"""Request and response bodies, with an OpenAPI example for each request.

Request models forbid unknown fields: `tenant_id`, `status`, `verification_status` or `role`
smuggled into a body are refused (422), never silently applied.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_serializer,
    field_validator,
)

from mandate_vault_api.clock import as_utc
from mandate_vault_api.mandates import MandateStatus
from mandate_vault_api.roles import Role
from mandate_vault_shared.messages import EventType

EMAIL_PATTERN = r"^[^@\s]{1,64}@[^@\s]{1,255}$"
TENANT_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{1,62}[a-z0-9]$"
DID_PATTERN = r"^did:[a-z0-9]+:[A-Za-z0-9._%:-]+$"

Email = Annotated[str, Field(pattern=EMAIL_PATTERN, max_length=320)]
# SQLite returns naive datetimes; every timestamp leaves the API in UTC with an offset.
Timestamp = Annotated[datetime, AfterValidator(as_utc)]


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    @field_validator("*", mode="after")
    @classmethod
    def _storable_text(cls, value: Any) -> Any:
        """PostgreSQL text holds neither NUL nor lone surrogates (JSON allows both): refuse
        them here (422) rather than fail at the database."""
        if isinstance(value, str):
            if "\x00" in value:
                raise ValueError("must not contain NUL characters")
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError("must be valid Unicode text (no lone surrogates)") from None
        return value


class Response(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# --- auth ---
class LoginRequest(Request):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"email": "ops@acme.example", "password": "s3cret-pass"}]},
    )
    email: Email
    password: str = Field(min_length=1, max_length=1024)


class RefreshRequest(Request):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"refresh_token": "mvr_..."}]}
    )
    refresh_token: str = Field(min_length=1, max_length=200)


class TokenResponse(Response):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_in: int


class PrincipalOut(Response):
    kind: str
    id: str
    tenant_id: str
    role: Role


# --- tenants ---
class TenantCreate(Request):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"id": "acme-corp", "name": "Acme Corp"}]}
    )
    id: str = Field(pattern=TENANT_ID_PATTERN)
    name: str = Field(min_length=1, max_length=200)


class TenantOut(Response):
    id: str
    name: str
    enabled: bool
    created_at: Timestamp


# --- users ---
class UserCreate(Request):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"email": "analyst@acme.example", "password": "a-long-passphrase", "role": "member"}
            ]
        },
    )
    email: Email
    password: str = Field(min_length=12, max_length=1024)
    role: Role = Role.MEMBER


class UserUpdate(Request):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"role": "readonly", "enabled": True}]}
    )
    role: Role | None = None
    enabled: bool | None = None


class UserOut(Response):
    id: str
    tenant_id: str
    email: str
    role: Role
    enabled: bool
    created_at: Timestamp


# --- API keys ---
class ApiKeyCreate(Request):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"name": "billing-service", "role": "member"}]},
    )
    name: str = Field(min_length=1, max_length=200)
    role: Role = Role.MEMBER


class ApiKeyOut(Response):
    id: str
    name: str
    role: Role
    prefix: str
    created_at: Timestamp
    revoked_at: Timestamp | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="Shown once. Send it as the X-API-Key header.")


# --- trusted issuers ---
class IssuerCreate(Request):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"issuer": "did:web:bank.example.com"}]},
    )
    issuer: str = Field(pattern=DID_PATTERN, max_length=512)


class IssuerOut(Response):
    id: str
    issuer: str
    created_at: Timestamp


# --- mandates ---
# A compact JWS is base64url segments and dots; anything outside printable ASCII (a NUL, say)
# cannot be one, and could not be stored as text either.
COMPACT_TOKEN_PATTERN = r"^[!-~]+$"  # noqa: S105 - a pattern, not a secret


class MandateCreate(Request):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"vc_jwt": "eyJhbGciOiJFUzI1NiIsImtpZCI6ImtleS0xIn0..."}]},
    )
    vc_jwt: str = Field(
        min_length=1,
        pattern=COMPACT_TOKEN_PATTERN,
        description="The mandate: a JWT Verifiable Credential in compact form (printable ASCII).",
    )


class MandateOut(Response):
    id: str
    tenant_id: str
    status: MandateStatus
    verification_status: str
    verification_reason: str | None
    issuer: str | None
    subject: str | None
    key_id: str | None
    scope: str | None
    amount_limit: Decimal | None
    currency: str | None
    expires_at: Timestamp | None
    created_at: Timestamp
    updated_at: Timestamp
    verified_at: Timestamp
    revoked_at: Timestamp | None
    version: int = Field(
        description="Increases with every change of the mandate; webhook events carry it as "
        "`sequence`"
    )

    @field_serializer("amount_limit")
    def _amount(self, value: Decimal | None) -> str | None:
        return None if value is None else f"{value:.2f}"


class MandatePage(Response):
    items: list[MandateOut]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null at the end."
    )


def rows(model: type[Response], items: Any) -> list[Any]:
    return [model.model_validate(item) for item in items]


def mandate_event_data(row: Any) -> dict[str, Any]:
    """A mandate as webhook payload `data` (the same shape the API returns)."""
    return MandateOut.model_validate(row).model_dump(mode="json")


# --- webhooks ---
class WebhookCreate(Request):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "url": "https://hooks.acme.example/mandates",
                    "event_types": ["MandateCreated", "MandateRevoked"],
                    "description": "billing system",
                }
            ]
        },
    )
    url: str = Field(min_length=8, max_length=2048)
    event_types: list[EventType] = Field(min_length=1, max_length=len(EventType))
    description: str | None = Field(None, max_length=500)


class WebhookUpdate(Request):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"event_types": ["MandateExpired"], "enabled": True}]},
    )
    url: str | None = Field(None, min_length=8, max_length=2048)
    event_types: list[EventType] | None = Field(None, min_length=1, max_length=len(EventType))
    description: str | None = Field(None, max_length=500)
    enabled: bool | None = None


class WebhookOut(Response):
    id: str
    tenant_id: str
    url: str
    event_types: list[EventType]
    description: str | None
    enabled: bool
    disabled_reason: str | None
    failing_since: Timestamp | None = Field(
        description="When the endpoint's current run of failed attempts began (null while it "
        "answers); after API_WEBHOOK_DISABLE_AFTER_SECONDS of failures it is disabled"
    )
    previous_secret_expires_at: Timestamp | None
    created_at: Timestamp
    updated_at: Timestamp

    @field_validator("event_types", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return value.split(",") if isinstance(value, str) else value


class WebhookCreated(WebhookOut):
    secret: str = Field(description="Shown once: the `whsec_` signing secret.")


class DeliveryAttemptOut(Response):
    event_id: str = Field(description="The `webhook-id` the subscriber received")
    attempt: int
    attempted_at: Timestamp
    status_code: int | None = Field(description="The endpoint's HTTP status (null: no answer)")
    latency_ms: float = Field(description="How long the attempt took, body included")
    error: str | None
    outcome: str = Field(description="The delivery's status after this attempt")
    response_body: str | None = Field(
        description="The first 1 KiB of the endpoint's answer: secret-shaped text redacted, "
        "control characters replaced by `?`"
    )
    retry_after_seconds: float | None = Field(
        description="The endpoint's `Retry-After`, in seconds, when it gave one"
    )


class DeliveryOut(Response):
    event_id: str = Field(description="The `webhook-id` the subscriber receives")
    subscription_id: str
    event_type: str
    status: str = Field(description="retrying, succeeded, failed or dead_lettered")
    attempts: int
    next_attempt_at: Timestamp | None = Field(description="When a retrying event is due")
    last_status_code: int | None
    last_error: str | None
    redelivery: str | None = Field(
        description="A redelivery asked for and not yet attempted (`api:retry`, `api:recover`, "
        "`cli:replay`, ...)"
    )
    created_at: Timestamp
    updated_at: Timestamp


class RedeliveryOut(Response):
    event_id: str
    status: str = Field(description="The delivery's status now (`retrying` once scheduled)")
    scheduled: bool = Field(
        description="False when the event was already scheduled or in flight: nothing more "
        "was done (asking twice is harmless)"
    )


def _iso_text(value: Any) -> Any:
    """A time given to the api is ISO 8601 text: a bare number is not taken for Unix seconds."""
    if not isinstance(value, str | datetime):
        raise ValueError("must be an ISO 8601 time with an offset, e.g. 2026-12-01T08:00:00Z")
    return value


def _in_utc(value: datetime) -> datetime:
    """The same instant in UTC; one the database cannot hold (year 0 after the offset) is
    refused here rather than failing there."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range") from None


IsoTime = Annotated[AwareDatetime, BeforeValidator(_iso_text), AfterValidator(_in_utc)]


class RecoverRequest(Request):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"since": "2026-11-01T00:00:00Z"}]}
    )
    since: IsoTime = Field(
        description="Redeliver the failed and dead-lettered events created at or after this "
        "time (ISO 8601 with an offset; not in the future)"
    )


class RecoverOut(Response):
    since: Timestamp
    scheduled: int = Field(description="Events scheduled for redelivery by this request")
