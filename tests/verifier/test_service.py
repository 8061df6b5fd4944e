"""The jwt-verifier as a real process: HTTP contract, error shapes, metrics, logs, spans."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from mandate_vault_harness.jose import (
    ALICE,
    DidServer,
    Keys,
    TlsFiles,
    b64,
    did_web_issuer,
    forge,
    mandate_claims,
    sign,
    static_issuer,
)
from mandate_vault_harness.metrics import label_keys, scrape, value
from mandate_vault_harness.otlp import OtlpReceiver
from mandate_vault_harness.services import ServiceProcess

BANK = "did:web:bank.example.com"
CLIENT_KIND = 3  # opentelemetry.proto SpanKind SPAN_KIND_CLIENT
RESPONSE_KEYS = {"status", "reason", "issuer", "subject", "key_id", "claims", "mandate"}
ERROR_KEYS = {"error", "detail", "request_id"}


def verifier_env(keys: Keys, did_server: DidServer, tls: TlsFiles) -> dict[str, str]:
    truststore = {
        "issuers": [
            static_issuer(BANK, [keys.rsa, keys.ec, keys.ed], ["RS256", "ES256", "EdDSA"]),
            did_web_issuer(did_server.did("svc"), ["ES256"]),
        ]
    }
    return {
        "VERIFIER_TRUSTSTORE_JSON": json.dumps(truststore),
        "VERIFIER_SSRF_ALLOWLIST": "127.0.0.1,localhost",
        "VERIFIER_DID_WEB_CA_FILE": str(tls.ca_file),
    }


@pytest.fixture(scope="module")
def service(keys: Keys, did_server_session: DidServer, tls: TlsFiles) -> Iterator[ServiceProcess]:
    process = ServiceProcess("jwt-verifier", verifier_env(keys, did_server_session, tls)).start()
    yield process
    process.stop()


def post(service: ServiceProcess, body: Any, **kwargs: Any) -> httpx.Response:
    if isinstance(body, bytes):
        return httpx.post(
            f"{service.url}/api/v1/verify",
            content=body,
            headers={"content-type": "application/json"},
            **kwargs,
        )
    return httpx.post(f"{service.url}/api/v1/verify", json=body, **kwargs)


def test_a_valid_mandate(service: ServiceProcess, keys: Keys) -> None:
    response = post(service, {"jwt": sign(keys.ec, mandate_claims(BANK)), "allowed_issuers": None})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == RESPONSE_KEYS
    assert body["status"] == "VALID"
    assert (body["issuer"], body["subject"], body["key_id"], body["reason"]) == (
        BANK, ALICE, "ec-1", None,
    )  # fmt: skip
    assert body["claims"]["vc"]["credentialSubject"]["currency"] == "EUR"
    mandate = body["mandate"]
    assert set(mandate) == {"scope", "amount_limit", "currency", "expires_at"}
    assert mandate["amount_limit"] == "100.00"
    assert mandate["expires_at"].endswith("Z")
    assert response.headers["x-request-id"]


def test_outcomes_are_200_with_a_status(service: ServiceProcess, keys: Keys) -> None:
    expired = mandate_claims(BANK, exp=int(time.time()) - 3600)
    cases = [
        ({"jwt": sign(keys.ed, expired)}, "EXPIRED", True),
        ({"jwt": forge({"alg": "none"}, mandate_claims(BANK))}, "ALG_NOT_ALLOWED", False),
        ({"jwt": sign(keys.stranger_rsa, mandate_claims(BANK))}, "SIG_INVALID", False),
        ({"jwt": sign(keys.ec, mandate_claims("did:web:x.example"))}, "ISSUER_UNKNOWN", False),
        ({"jwt": sign(keys.ec, mandate_claims(BANK)), "allowed_issuers": ["did:web:other"]},
         "ISSUER_UNKNOWN", False),
        ({"jwt": "not.a.token"}, "INVALID_FORMAT", False),
        ({"jwt": sign(keys.ec, mandate_claims(BANK, n=2**70))}, "INVALID_FORMAT", False),
        ({"jwt": forge({"alg": "ES256"}, b64(b'{"iss": "\\udead"}'), keys.ec)},
         "INVALID_FORMAT", False),
        ({"jwt": ""}, "INVALID_FORMAT", False),
    ]  # fmt: skip
    for request, status, has_claims in cases:
        response = post(service, request)
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == RESPONSE_KEYS
        assert body["status"] == status
        assert (body["claims"] is not None) is has_claims
        assert (body["mandate"] is not None) is has_claims
        assert body["reason"]


def test_too_large_is_413_in_the_shared_shape(service: ServiceProcess, keys: Keys) -> None:
    token = sign(keys.ec, mandate_claims(BANK, pad="p" * 16_000))
    assert len(token) > 16 * 1024
    for response in (
        post(service, {"jwt": token}),
        post(service, {"jwt": "a" * 100_000}),
        post(service, b'{"jwt": "' + b"a" * 1_000_000 + b'"}'),
    ):
        assert response.status_code == 413
        body = response.json()
        assert set(body) == ERROR_KEYS
        assert body["error"] == "payload_too_large"
        assert body["request_id"] == response.headers["x-request-id"]


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"", b"[]", b'{"allowed_issuers": null}', b'{"jwt": 42}',
     b'{"jwt": "a.b.c", "allowed_issuers": "did:web:x"}', b'{"jwt": null}'],
)  # fmt: skip
def test_malformed_requests_are_422_in_the_shared_shape(
    service: ServiceProcess, body: bytes
) -> None:
    response = post(service, body)
    assert response.status_code == 422
    answer = response.json()
    assert set(answer) >= ERROR_KEYS
    assert answer["error"] == "validation_error"
    assert answer["fields"]
    assert "did:web:x" not in response.text  # input is never echoed


def test_readiness_reports_the_truststore(service: ServiceProcess) -> None:
    response = httpx.get(f"{service.url}/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"truststore": "ok"}}


def test_metrics_count_each_verification_with_bounded_labels(
    service: ServiceProcess, keys: Keys, did_server_session: DidServer
) -> None:
    name = "jwt_verifications_total"
    before = scrape(service.url)
    for _ in range(3):
        post(service, {"jwt": sign(keys.rsa, mandate_claims(BANK))})
    for n in range(2):
        post(service, {"jwt": sign(keys.ec, mandate_claims(f"did:web:random-{n}.example"))})
    post(service, {"jwt": "x" * 20_000})
    after = scrape(service.url)

    def delta(**labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta(status="VALID", issuer=BANK) == 3
    assert delta(status="ISSUER_UNKNOWN", issuer="untrusted") == 2
    assert delta(status="TOKEN_TOO_LARGE", issuer="untrusted") == 1
    assert label_keys(after, name) == {frozenset({"status", "issuer"})}
    issuers = {s.labels["issuer"] for s in after if s.name == name}
    assert issuers <= {BANK, did_server_session.did("svc"), "untrusted"}


def test_one_log_line_per_verification_and_never_the_token(
    service: ServiceProcess, keys: Keys
) -> None:
    token = sign(keys.ed, mandate_claims(BANK, jti="log-line-test"))
    response = post(service, {"jwt": token}, headers={"x-request-id": "verify-log-1"})
    assert response.json()["status"] == "VALID"
    time.sleep(0.2)
    lines = [
        r for r in service.json_logs()
        if r.get("event") == "jwt_verification" and r.get("request_id") == "verify-log-1"
    ]  # fmt: skip
    assert len(lines) == 1
    line = lines[0]
    assert line["level"] == "info"
    assert (line["status"], line["issuer"], line["key_id"]) == ("VALID", BANK, "ed-1")
    assert line["duration_ms"] >= 0
    output = service.output()
    assert token not in output
    assert token.split(".")[1] not in output


def test_did_web_is_fetched_once_with_a_client_span(
    keys: Keys, did_server: DidServer, tls: TlsFiles, otlp: OtlpReceiver
) -> None:
    did = did_server.did("svc")
    did_server.publish(did, [keys.ec], "svc")
    env = {
        **verifier_env(keys, did_server, tls),
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    process = ServiceProcess("jwt-verifier", env).start()
    try:
        for _ in range(3):
            body = post(process, {"jwt": sign(keys.ec, mandate_claims(did))}).json()
            assert body["status"] == "VALID", body
            assert body["key_id"] == f"{did}#ec-1"
        assert did_server.requests == ["/svc/did.json"]
        otlp.wait_for(lambda r: any(s.kind == CLIENT_KIND for s in r.spans))
        client = next(s for s in otlp.spans if s.kind == CLIENT_KIND)
        assert client.name == "GET"
        assert client.attributes["url.full"] == f"https://localhost:{did_server.port}/svc/did.json"
        assert client.attributes["http.response.status_code"] == 200
        otlp.wait_for(lambda r: any(s.span_id == client.parent_span_id for s in r.spans))
        parent = next(s for s in otlp.spans if s.span_id == client.parent_span_id)
        assert parent.name == "POST /api/v1/verify"
        assert parent.attributes["mandate_vault.verification.status"] == "VALID"
    finally:
        process.stop()


def test_a_bad_truststore_stops_the_service_with_a_clear_message(keys: Keys) -> None:
    bad = {"issuers": [{"id": BANK, "algorithms": ["HS256"], "keys": [keys.ec.public_jwk()]}]}
    process = ServiceProcess("jwt-verifier", {"VERIFIER_TRUSTSTORE_JSON": json.dumps(bad)})
    process.start(wait=False)
    deadline = time.monotonic() + 20
    while process.running and time.monotonic() < deadline:
        time.sleep(0.1)
    assert process.stop() == 2
    output = process.output()
    assert "invalid setting VERIFIER_TRUSTSTORE_JSON: issuers.0.algorithms" in output
    assert "Traceback" not in output
