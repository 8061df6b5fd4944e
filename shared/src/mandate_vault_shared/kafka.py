"""Kafka with trace context: W3C headers in, W3C headers out, one span per send and per message.

The producer injects ``traceparent`` (and ``baggage``) into the record headers inside a PRODUCER
span; the consumer extracts it and starts its CONSUMER processing span as that span's child,
so one trace runs from the HTTP request that caused an event to the webhook it becomes.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final, Literal, Self

from aiokafka.helpers import create_ssl_context
from opentelemetry import propagate
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter, Setter
from opentelemetry.trace import Span, SpanKind
from pydantic import BaseModel, Field, FilePath, SecretStr, model_validator

from mandate_vault_shared.setting_types import BrokerList
from mandate_vault_shared.telemetry.semconv import MessagingTelemetry

Headers = list[tuple[str, bytes]]

_MESSAGING_SYSTEM: Final = "kafka"
SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class KafkaSettings(BaseModel):
    """Connection settings; a field of each service's settings (``<PREFIX>KAFKA__...``).

    Managed Kafka: ``SASL_SSL`` with ``PLAIN`` or ``SCRAM-SHA-256/512``, the provider's CA in
    ``ssl_cafile`` (system CAs when unset), optionally a client certificate. Checked on load:
    SASL needs a mechanism, user and password; PLAIN only over TLS; TLS files must exist and
    parse.
    """

    bootstrap_servers: BrokerList = "127.0.0.1:9092"
    client_id: str = "mandate-vault"
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: FilePath | None = None
    ssl_certfile: FilePath | None = None
    ssl_keyfile: FilePath | None = None
    enable_idempotence: bool = Field(
        False, description="Turn on with Apache Kafka; the embedded test broker lacks it."
    )
    request_timeout_ms: int = Field(10_000, description="producers' request timeout")

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        sasl = (self.sasl_mechanism, self.sasl_username, self.sasl_password)
        if self.uses_sasl and None in sasl:
            msg = f"{self.security_protocol} needs sasl_mechanism, sasl_username, sasl_password"
            raise ValueError(msg)
        if not self.uses_sasl and any(value is not None for value in sasl):
            msg = f"sasl_* settings need a SASL_* security_protocol, not {self.security_protocol}"
            raise ValueError(msg)
        if self.sasl_mechanism == "PLAIN" and not self.uses_tls:
            msg = "SASL PLAIN sends the password in clear: use security_protocol SASL_SSL"
            raise ValueError(msg)
        files = (self.ssl_cafile, self.ssl_certfile, self.ssl_keyfile)
        if not self.uses_tls and any(path is not None for path in files):
            msg = (
                f"ssl_* files need security_protocol SSL or SASL_SSL, not {self.security_protocol}"
            )
            raise ValueError(msg)
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            msg = "ssl_certfile and ssl_keyfile go together (a client certificate and its key)"
            raise ValueError(msg)
        if self.uses_tls:
            try:  # a CA or certificate that does not parse stops the service now
                self.ssl_context()
            except (ssl.SSLError, OSError) as exc:
                msg = f"the TLS files cannot be loaded ({type(exc).__name__})"
                raise ValueError(msg) from exc
        return self

    def ssl_context(self) -> ssl.SSLContext:
        """Server verified against `ssl_cafile` (or the system CAs), hostname checked."""
        context: ssl.SSLContext = create_ssl_context(
            cafile=str(self.ssl_cafile) if self.ssl_cafile else None,
            certfile=str(self.ssl_certfile) if self.ssl_certfile else None,
            keyfile=str(self.ssl_keyfile) if self.ssl_keyfile else None,
        )
        return context


def connection_options(settings: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments every aiokafka client (producer, consumer, admin) shares."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "client_id": settings.client_id,
        "security_protocol": settings.security_protocol,
    }
    if settings.uses_tls:
        options["ssl_context"] = settings.ssl_context()
    if settings.uses_sasl:
        assert settings.sasl_password is not None  # checked on load
        options["sasl_mechanism"] = settings.sasl_mechanism
        options["sasl_plain_username"] = settings.sasl_username
        options["sasl_plain_password"] = settings.sasl_password.get_secret_value()
    return options


def producer_options(settings: KafkaSettings) -> dict[str, Any]:
    """AIOKafkaProducer keyword arguments: every write acknowledged by all in-sync replicas."""
    return {
        **connection_options(settings),
        # not for consumers: a group join may legitimately wait a whole session timeout
        "request_timeout_ms": settings.request_timeout_ms,
        "acks": "all",
        "enable_idempotence": settings.enable_idempotence,
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
def producer_span(messaging: MessagingTelemetry, topic: str, headers: Headers) -> Iterator[Span]:
    """A PRODUCER span whose context is injected into ``headers`` (which must be a list)."""
    attributes = {
        "messaging.system": _MESSAGING_SYSTEM,
        "messaging.destination.name": topic,
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
    }
    started, error = time.perf_counter(), ""
    try:
        with messaging.tracer.start_as_current_span(
            f"send {topic}", kind=SpanKind.PRODUCER, attributes=attributes
        ) as span:
            inject_trace_context(headers)
            yield span
    except BaseException as exc:
        error = type(exc).__name__
        raise
    finally:
        messaging.sent(topic, time.perf_counter() - started, error)


@contextmanager
def consumer_span(messaging: MessagingTelemetry, record: Any, group: str) -> Iterator[Span]:
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
    started, error = time.perf_counter(), ""
    try:
        with messaging.tracer.start_as_current_span(
            f"process {record.topic}",
            context=extract_trace_context(record.headers),
            kind=SpanKind.CONSUMER,
            attributes=attributes,
        ) as span:
            yield span
    except BaseException as exc:
        error = type(exc).__name__
        raise
    finally:
        messaging.processed(record.topic, time.perf_counter() - started, error)
