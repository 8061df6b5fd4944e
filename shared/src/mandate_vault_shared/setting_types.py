"""Setting types that check their value on load and say, in one line, what is wrong and how
to fix it. Messages never repeat a value that may hold a secret (URLs with passwords, keys).

Used as field annotations in every service's settings, e.g. ``database_url: DatabaseUrl``.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Final

from cryptography.fernet import Fernet
from pydantic import AfterValidator, SecretStr
from sentry_sdk.utils import BadDsn, Dsn
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from yarl import URL

from mandate_vault_shared.ssrf import valid_hostname

# The database drivers installed with the services (both async); anything else cannot connect.
DATABASE_DRIVERS: Final = ("postgresql+asyncpg", "sqlite+aiosqlite")
_POSTGRES_EXAMPLE: Final = "postgresql+asyncpg://user:password@host:5432/database"
_SQLITE_EXAMPLE: Final = "sqlite+aiosqlite:///./var/mandate_vault.db"
_MAX_PORT: Final = 65535


def _database_url(value: str) -> str:
    try:
        driver = make_url(value).drivername
    except ArgumentError:
        msg = f"is not a database URL: write {_POSTGRES_EXAMPLE} (or {_SQLITE_EXAMPLE})"
        raise ValueError(msg) from None
    if driver in DATABASE_DRIVERS:
        return value
    if driver.split("+")[0] in ("postgres", "postgresql"):
        msg = (
            f"{driver}:// names a driver the services do not ship: "
            f"write postgresql+asyncpg:// instead ({_POSTGRES_EXAMPLE})"
        )
    elif driver.startswith("sqlite"):
        msg = f"{driver}:// names a driver the services do not ship: write {_SQLITE_EXAMPLE}"
    else:
        msg = f"{driver}:// is not supported: use PostgreSQL, {_POSTGRES_EXAMPLE}"
    raise ValueError(msg)


def _parse_url(value: str, schemes: tuple[str, ...], example: str) -> URL:
    expected = " or ".join(f"{scheme}://" for scheme in schemes)
    problem = f"must be a URL with the scheme {expected} and a host, e.g. {example}"
    try:
        url = URL(value)
        port = url.port  # an out-of-range or non-numeric port raises here
    except (ValueError, TypeError):
        raise ValueError(problem) from None
    if url.scheme not in schemes or not url.host or (port is not None and port > _MAX_PORT):
        raise ValueError(problem)
    return url


def http_url_check(example: str, *, empty_is_unset: bool = False) -> AfterValidator:
    """An http(s) URL with a host; `example` shows the expected shape in the message."""

    def check(value: str) -> str:
        if empty_is_unset and not value:
            return value
        url = _parse_url(value, ("http", "https"), example)
        if url.query_string or url.fragment:
            msg = f"must not carry a query or fragment, e.g. {example}"
            raise ValueError(msg)
        return value

    return AfterValidator(check)


def _redis_url(value: SecretStr) -> SecretStr:
    url = _parse_url(value.get_secret_value(), ("redis", "rediss"), "redis://redis:6379/0")
    database = url.path.strip("/")
    if database and not database.isdigit():
        msg = "must name a numeric database after the host, e.g. redis://redis:6379/0"
        raise ValueError(msg)
    return value


def _broker_list(value: str) -> str:
    entries = [entry.strip() for entry in value.split(",")]
    if not any(entries):
        msg = "must list at least one broker as host:port, e.g. kafka-1:9092,kafka-2:9092"
        raise ValueError(msg)
    for entry in entries:
        host, colon, port = entry.rpartition(":")
        bare_host = host.strip("[]")
        if not (colon and port.isdigit() and 0 < int(port) <= _MAX_PORT and bare_host):
            msg = f"entry {entry!r} is not host:port, e.g. kafka-1:9092,kafka-2:9092"
            raise ValueError(msg)
        if not (_is_ip(bare_host) or valid_hostname(bare_host.lower())):
            msg = f"entry {entry!r} does not name a valid host"
            raise ValueError(msg)
    return value


def _fernet_keys(value: SecretStr) -> SecretStr:
    keys = [part.strip() for part in value.get_secret_value().split(",") if part.strip()]
    if not keys:
        msg = "must hold at least one Fernet key; `mandate-vault keys new-encryption-key`"
        raise ValueError(msg)
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key.encode())
        except (ValueError, TypeError):
            msg = (
                f"key {position} of {len(keys)} is not a Fernet key (32 url-safe base64 bytes,"
                " 44 characters); `mandate-vault keys new-encryption-key` makes one"
            )
            raise ValueError(msg) from None
    return value


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _host_list(value: str) -> str:
    for raw in value.split(","):
        entry = raw.strip().lower().strip("[]").rstrip(".")
        if not entry:
            continue
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            if not valid_hostname(entry):
                msg = f"entry {raw.strip()!r} is neither a hostname, an IP address nor a CIDR"
                raise ValueError(msg) from None
    return value


def _sentry_dsn(value: SecretStr) -> SecretStr:
    if not value.get_secret_value():
        return value  # empty: Sentry off, as the SDK reads it (compose passes SENTRY_DSN=)
    try:
        Dsn(value.get_secret_value())
    except BadDsn:
        msg = "is not a Sentry DSN, e.g. https://<public key>@sentry.example.com/<project id>"
        raise ValueError(msg) from None
    return value


def _delays(value: str) -> str:
    for part in (part.strip() for part in value.split(",") if part.strip()):
        try:
            ok = float(part) >= 0
        except ValueError:
            ok = False
        if not ok:
            msg = f"entry {part!r} is not a delay in seconds (>= 0), e.g. 5,300,1800"
            raise ValueError(msg)
    return value


def _otlp_protocol(value: str) -> str:
    if value not in ("", "http/protobuf", "grpc"):
        msg = f"{value} is not supported: use http/protobuf (port 4318) or grpc (port 4317)"
        raise ValueError(msg)
    return value


DatabaseUrl = Annotated[str, AfterValidator(_database_url)]
"""A SQLAlchemy URL whose driver the services ship: postgresql+asyncpg or sqlite+aiosqlite."""
BrokerList = Annotated[str, AfterValidator(_broker_list)]
"""Kafka bootstrap servers: comma-separated host:port."""
HostList = Annotated[str, AfterValidator(_host_list)]
"""Comma-separated hostnames, IP addresses or CIDRs (may be empty)."""
DelayList = Annotated[str, AfterValidator(_delays)]
"""Comma-separated delays in seconds."""
FernetKeys = Annotated[SecretStr, AfterValidator(_fernet_keys)]
"""Comma-separated Fernet keys (the first encrypts, all decrypt)."""
RedisUrl = Annotated[SecretStr, AfterValidator(_redis_url)]
SentryDsn = Annotated[SecretStr, AfterValidator(_sentry_dsn)]
# Empty means unset for the standard variables, as the SDKs read them.
OtlpEndpoint = Annotated[str, http_url_check("http://otel-collector:4318", empty_is_unset=True)]
OtlpProtocol = Annotated[str, AfterValidator(_otlp_protocol)]
