"""Every URL, key and list setting is checked on load; the message names what is wrong."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from mandate_vault_api.settings import ApiSettings
from mandate_vault_shared.setting_types import (
    BrokerList,
    DatabaseUrl,
    DelayList,
    FernetKeys,
    HostList,
    OtlpEndpoint,
    OtlpProtocol,
    RedisUrl,
    SentryDsn,
)

# fixed keys: parameter ids must be the same in every xdist worker
KEY = base64.urlsafe_b64encode(b"k" * 32).decode()
OTHER_KEY = base64.urlsafe_b64encode(b"o" * 32).decode()


def problem(annotation: Any, value: str) -> str:
    with pytest.raises(ValidationError) as caught:
        TypeAdapter(annotation).validate_python(value)
    (error,) = caught.value.errors()
    return str(error["msg"]).removeprefix("Value error, ")


@pytest.mark.parametrize(
    ("annotation", "value"),
    [
        (DatabaseUrl, "postgresql+asyncpg://mv:pw@db:5432/mandate_vault"),
        (DatabaseUrl, "sqlite+aiosqlite:///./var/mandate_vault.db"),
        (BrokerList, "kafka-1:9092, kafka-2:9092,[::1]:9093,10.0.0.7:9092"),
        (HostList, ""),
        (HostList, "127.0.0.1, localhost,10.0.0.0/8,[::1],hooks.example.com."),
        (DelayList, "0,5,300.5"),
        (DelayList, ""),
        (FernetKeys, f"{KEY},{OTHER_KEY}"),
        (RedisUrl, "rediss://:pw@redis.example:6380/2"),
        (SentryDsn, "https://public@sentry.example.com/42"),
        (OtlpEndpoint, "http://otel-collector:4318"),
        (OtlpProtocol, "http/protobuf"),
        (OtlpProtocol, "grpc"),
        # empty is "unset" for the standard variables (compose passes SENTRY_DSN= when unset)
        (SentryDsn, ""),
        (OtlpEndpoint, ""),
        (OtlpProtocol, ""),
    ],
)
def test_good_values_pass(annotation: Any, value: str) -> None:
    TypeAdapter(annotation).validate_python(value)


@pytest.mark.parametrize("scheme", ["postgres", "postgresql", "postgresql+psycopg2"])
def test_postgres_urls_without_the_async_driver_say_which_to_use(scheme: str) -> None:
    message = problem(DatabaseUrl, f"{scheme}://mv:pw@db/mandate_vault")
    assert message == (
        f"{scheme}:// names a driver the services do not ship: write postgresql+asyncpg:// "
        "instead (postgresql+asyncpg://user:password@host:5432/database)"
    )


@pytest.mark.parametrize(
    ("annotation", "value", "expected"),
    [
        (DatabaseUrl, "mysql://u@h/d", "mysql:// is not supported: use PostgreSQL"),
        (DatabaseUrl, "sqlite:///x.db", "write sqlite+aiosqlite:///"),
        (DatabaseUrl, "not a url", "is not a database URL"),
        (BrokerList, "kafka-1", "entry 'kafka-1' is not host:port"),
        (BrokerList, "kafka-1:9092,kafka-2:0", "entry 'kafka-2:0' is not host:port"),
        (BrokerList, "bad host!:9092", "does not name a valid host"),
        (BrokerList, " , ", "at least one broker"),
        (HostList, "10.0.0.0/8,not a host", "entry 'not a host' is neither"),
        (DelayList, "5,soon", "entry 'soon' is not a delay"),
        (DelayList, "5,-1", "entry '-1' is not a delay"),
        (FernetKeys, "0123456789abcdef", "key 1 of 1 is not a Fernet key"),
        (FernetKeys, f"{KEY},short", "key 2 of 2 is not a Fernet key"),
        (FernetKeys, " , ", "at least one Fernet key"),
        (RedisUrl, "http://redis:6379", "redis:// or rediss://"),
        (RedisUrl, "redis://redis:port/0", "redis:// or rediss://"),
        (RedisUrl, "redis://redis:6379/zero", "numeric database"),
        (SentryDsn, "https://sentry.example.com/42", "is not a Sentry DSN"),
        (OtlpEndpoint, "otel-collector:4318", "http:// or https://"),
        (OtlpEndpoint, "http://collector:4318/?x=1", "must not carry a query"),
        (OtlpProtocol, "http/json", "http/json is not supported: use http/protobuf"),
    ],
)
def test_bad_values_say_what_is_wrong(annotation: object, value: str, expected: str) -> None:
    assert expected in problem(annotation, value)


def test_settings_errors_never_repeat_a_secret() -> None:
    redis, key = "redis://:hunter2-secret@redis:port/0", "hunter2-secret-key"
    with pytest.raises(ValidationError) as caught:
        ApiSettings(redis_url=redis, webhook_encryption_key=key)
    assert len(caught.value.errors()) == 2
    assert "hunter2" not in str(caught.value)
