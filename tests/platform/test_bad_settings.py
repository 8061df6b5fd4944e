"""Bad configuration stops every service and the CLI on load: one line per problem naming the
variable, exit status 2, no traceback. Real processes, as an operator starts them."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

NOT_FERNET = "0123456789abcdef"  # 16 characters: long enough for a secret, not a Fernet key
POSTGRES_FIX = (
    "names a driver the services do not ship: write postgresql+asyncpg:// instead "
    "(postgresql+asyncpg://user:password@host:5432/database)"
)
FERNET_FIX = (
    "key 1 of 1 is not a Fernet key (32 url-safe base64 bytes, 44 characters); "
    "`mandate-vault keys new-encryption-key` makes one"
)
BOOTSTRAP = ["bootstrap", "--tenant-id", "t", "--tenant-name", "T", "--admin-email", "a@t.example"]
OTLP_FIX = (
    "must be a URL with the scheme http:// or https:// and a host, e.g. http://otel-collector:4318"
)

CASES = {
    "api": (
        ["-m", "mandate_vault_api"],
        {
            "ENVIRONMENT": "production",
            "API_TOKEN_SIGNING_KEY": "a-real-signing-secret-of-some-length",
            "API_DATABASE_URL": "postgres://mv:pw@db/mandate_vault",
            "API_WEBHOOK_ENCRYPTION_KEY": NOT_FERNET,
            "API_VERIFIER_URL": "jwt-verifier:8001",
            "API_REDIS_URL": "redis-host:6379",
        },
        [
            f"invalid setting API_DATABASE_URL: postgres:// {POSTGRES_FIX}",
            "invalid setting API_VERIFIER_URL: must be a URL with the scheme http:// or https:// "
            "and a host, e.g. http://jwt-verifier:8001",
            "invalid setting API_REDIS_URL: must be a URL with the scheme redis:// or rediss:// "
            "and a host, e.g. redis://redis:6379/0",
            f"invalid setting API_WEBHOOK_ENCRYPTION_KEY: {FERNET_FIX}",
        ],
    ),
    "webhook-worker": (
        ["-m", "mandate_vault_worker"],
        {
            "ENVIRONMENT": "production",
            "WORKER_DATABASE_URL": "postgresql://mv:pw@db/mandate_vault",
            "WORKER_WEBHOOK_ENCRYPTION_KEY": NOT_FERNET,
            "WORKER_KAFKA__BOOTSTRAP_SERVERS": "kafka-1:9092,kafka-2",
        },
        [
            "invalid setting WORKER_KAFKA__BOOTSTRAP_SERVERS: entry 'kafka-2' is not host:port, "
            "e.g. kafka-1:9092,kafka-2:9092",
            f"invalid setting WORKER_DATABASE_URL: postgresql:// {POSTGRES_FIX}",
            f"invalid setting WORKER_WEBHOOK_ENCRYPTION_KEY: {FERNET_FIX}",
        ],
    ),
    "jwt-verifier": (
        ["-m", "mandate_vault_verifier"],
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "otel-collector:4318",
            "VERIFIER_SSRF_ALLOWLIST": "10.0.0.0/8,not a host",
        },
        [
            f"invalid setting OTEL_EXPORTER_OTLP_ENDPOINT: {OTLP_FIX}",
            "invalid setting VERIFIER_SSRF_ALLOWLIST: entry 'not a host' is neither a hostname, "
            "an IP address nor a CIDR",
        ],
    ),
    "cli": (
        ["-m", "mandate_vault_api.cli", *BOOTSTRAP],
        {
            "API_DATABASE_URL": "postgresql://mv:pw@db/mandate_vault",
            "API_KAFKA__BOOTSTRAP_SERVERS": "kafka-1",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json",
        },
        [
            "invalid setting OTEL_EXPORTER_OTLP_PROTOCOL: http/json is not supported: use "
            "http/protobuf (port 4318) or grpc (port 4317)",
            f"invalid setting API_DATABASE_URL: postgresql:// {POSTGRES_FIX}",
            "invalid setting API_KAFKA__BOOTSTRAP_SERVERS: entry 'kafka-1' is not host:port, "
            "e.g. kafka-1:9092,kafka-2:9092",
        ],
    ),
}


@pytest.mark.parametrize("program", list(CASES))
def test_bad_settings_stop_on_load_with_one_line_each(program: str) -> None:
    args, bad, expected = CASES[program]
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("API_", "WORKER_", "OTEL_"))}
    result = subprocess.run(
        [sys.executable, *args],
        env={**clean, **bad},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert sorted(result.stderr.splitlines()) == sorted(expected)
