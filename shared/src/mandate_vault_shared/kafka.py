"""Kafka with trace context: W3C headers in, W3C headers out, one span per send and per message.

The producer injects ``traceparent`` (and ``baggage``) into the record headers inside a PRODUCER
span; the consumer extracts it and starts its CONSUMER processing span as that span's child,
so one trace runs from the HTTP request that caused an event to the webhook it becomes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final

from opentelemetry import propagate
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter, Setter
from opentelemetry.trace import Span, SpanKind, Tracer
from pydantic import BaseModel, Field

Headers = list[tuple[str, bytes]]

_MESSAGING_SYSTEM: Final = "kafka"


class KafkaSettings(BaseModel):
    """Connection settings; a field of each service's settings (``<PREFIX>KAFKA__...``)."""

    bootstrap_servers: str = "127.0.0.1:9092"
    client_id: str = "mandate-vault"
    security_protocol: str = "PLAINTEXT"
    enable_idempotence: bool = Field(
        False, description="Turn on with Apache Kafka; the embedded test broker lacks it."
    )
    request_timeout_ms: int = 10_000


def producer_options(settings: KafkaSettings) -> dict[str, object]:
    """AIOKafkaProducer keyword arguments: every write acknowledged by all in-sync replicas."""
    return {
        "bootstrap_servers": settings.bootstrap_servers,
        "client_id": settings.client_id,
        "security_protocol": settings.security_protocol,
        "acks": "all",
        "enable_idempotence": settings.enable_idempotence,
        "request_timeout_ms": settings.request_timeout_ms,
    }


class _HeaderSetter(Setter[Headers]):
    def set(self, carrier: Headers, key: str, value: str) -> None:
        carrier[:] = [(k, v) for k, v in carrier if k != key]
        carrier.append((key, value.encode()))


class _HeaderGetter(Getter[Sequence[tuple[str, bytes]]]):
    def get(self, carrier: Sequence[tuple[str, bytes]], key: str) -> list[str] | None:
        values = [v.decode("utf-8", "replace") for k, v in carrier if k.lower() == key]
        return values or None

    def keys(self, carrier: Sequence[tuple[str, bytes]]) -> list[str]:
        return [k for k, _ in carrier]


_SETTER: Final = _HeaderSetter()
_GETTER: Final = _HeaderGetter()


def inject_trace_context(headers: Headers, context: Context | None = None) -> None:
    propagate.inject(headers, context=context, setter=_SETTER)


def extract_trace_context(headers: Sequence[tuple[str, bytes]] | None) -> Context:
    return propagate.extract(list(headers or ()), getter=_GETTER)


def header(headers: Sequence[tuple[str, bytes]] | None, key: str) -> str | None:
    values = _GETTER.get(list(headers or ()), key)
    return values[0] if values else None


@contextmanager
def producer_span(tracer: Tracer, topic: str, headers: Headers) -> Iterator[Span]:
    """A PRODUCER span whose context is injected into ``headers`` (which must be a list)."""
    attributes = {
        "messaging.system": _MESSAGING_SYSTEM,
        "messaging.destination.name": topic,
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
    }
    with tracer.start_as_current_span(
        f"send {topic}", kind=SpanKind.PRODUCER, attributes=attributes
    ) as span:
        inject_trace_context(headers)
        yield span


@contextmanager
def consumer_span(tracer: Tracer, record: Any, group: str) -> Iterator[Span]:
    """A CONSUMER processing span, child of the trace context the producer put in the headers."""
    attributes = {
        "messaging.system": _MESSAGING_SYSTEM,
        "messaging.destination.name": record.topic,
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.consumer.group.name": group,
        "messaging.destination.partition.id": str(record.partition),
        "messaging.kafka.offset": record.offset,
    }
    with tracer.start_as_current_span(
        f"process {record.topic}",
        context=extract_trace_context(record.headers),
        kind=SpanKind.CONSUMER,
        attributes=attributes,
    ) as span:
        yield span
