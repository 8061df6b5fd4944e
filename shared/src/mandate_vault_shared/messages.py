"""Typed Kafka messages. Every message carries ``type``, ``event_id`` and ``schema_version``.

A consumer rejects (dead-letters) a message whose type or schema version it does not know
instead of guessing at its shape.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field

WEBHOOK_JOBS_TOPIC: Final = "webhook-jobs"
DEAD_LETTER_SUFFIX: Final = ".dlq"

# Kafka header names (values are UTF-8).
HEADER_EVENT_TYPE: Final = "event-type"
HEADER_SCHEMA_VERSION: Final = "schema-version"
HEADER_MESSAGE_TYPE: Final = "message-type"


class EventType(StrEnum):
    MANDATE_CREATED = "MandateCreated"
    MANDATE_VERIFICATION_FAILED = "MandateVerificationFailed"
    MANDATE_REVOKED = "MandateRevoked"
    MANDATE_EXPIRED = "MandateExpired"
    # Operational: a subscription of the tenant was disabled because its endpoint kept failing.
    ENDPOINT_DISABLED = "endpoint.disabled"


class WebhookJob(BaseModel):
    """One event to deliver to one subscription; ``event_id`` becomes ``webhook-id``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["webhook.job"] = "webhook.job"
    schema_version: Literal[1] = 1
    event_id: str = Field(min_length=1, max_length=64)
    event_type: EventType
    tenant_id: str
    subscription_id: str
    occurred_at: datetime
    body: str = Field(description="The exact JSON body to sign and send")

    def encode(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def decode(cls, raw: bytes | None) -> WebhookJob:
        return cls.model_validate_json(raw or b"")

    def headers(self) -> list[tuple[str, bytes]]:
        """Routing headers (trace context is added by the producer span)."""
        return [
            (HEADER_MESSAGE_TYPE, self.type.encode()),
            (HEADER_EVENT_TYPE, self.event_type.value.encode()),
            (HEADER_SCHEMA_VERSION, str(self.schema_version).encode()),
        ]
