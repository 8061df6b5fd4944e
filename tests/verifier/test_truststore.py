"""Truststore loading: every entry checked at start, with a message naming the bad one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ValidationError

from mandate_vault_harness.jose import Keys, SigningKey, did_web_issuer, static_issuer
from mandate_vault_verifier.settings import VerifierSettings
from mandate_vault_verifier.truststore import TruststoreError, load_truststore, parse_truststore

BANK = "did:web:bank.example.com"


def load(*issuers: dict[str, Any]) -> Any:
    return parse_truststore(json.dumps({"issuers": list(issuers)}))


def test_static_and_did_web_issuers_load(keys: Keys) -> None:
    store = load(
        static_issuer(BANK, [keys.rsa, keys.ec], ["RS256", "PS256", "ES256"]),
        did_web_issuer("did:web:other.example:issuers:1", ["EdDSA"]),
    )
    bank = store.get(BANK)
    assert bank is not None
    assert bank.keys["rsa-1"].algorithms == {"RS256", "PS256"}
    assert bank.keys["ec-1"].algorithms == {"ES256"}
    other = store.get("did:web:other.example:issuers:1")
    assert other is not None
    assert str(other.did_web_url) == "https://other.example/issuers/1/did.json"
    assert store.static_key_count == 2


def _weak_rsa() -> SigningKey:
    return SigningKey(
        "weak", "RS256", rsa.generate_private_key(public_exponent=65537, key_size=1024)
    )


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda k: {"id": BANK, "algorithms": ["HS256"], "keys": [k.ec.public_jwk()]}, "algorithms"),
        (lambda k: {"id": BANK, "algorithms": ["none"], "keys": [k.ec.public_jwk()]}, "algorithms"),
        (lambda k: {"id": BANK, "algorithms": [], "keys": [k.ec.public_jwk()]}, "algorithms"),
        (lambda k: {"id": BANK, "algorithms": ["ES256"],
                    "keys": [{**k.ec.public_jwk(), "d": "AAAA"}]}, "private"),
        (lambda k: {"id": BANK, "algorithms": ["ES256"],
                    "keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"}]}, "private"),
        (lambda k: {"id": BANK, "algorithms": ["RS256"], "keys": [_weak_rsa().public_jwk()]},
         "2048"),
        (lambda k: {"id": BANK, "algorithms": ["RS256"], "keys": [k.ec.public_jwk()]},
         "no allowed algorithm"),
        (lambda k: {"id": BANK, "algorithms": ["ES256"],
                    "keys": [k.ec.public_jwk(), k.ec.public_jwk()]}, "duplicate kid"),
        (lambda k: {"id": BANK, "algorithms": ["ES256"],
                    "keys": [{**k.ec.public_jwk(), "kid": ""}]}, "kid"),
        (lambda k: {"id": BANK, "algorithms": ["ES256"],
                    "keys": [k.ec.public_jwk(use="enc")]}, "use"),
        (lambda k: {"id": BANK, "algorithms": ["ES256"],
                    "keys": [k.ec.public_jwk(key_ops=["sign"])]}, "key_ops"),
        (lambda k: {"id": BANK, "algorithms": ["ES256"],
                    "keys": [{**k.ec.public_jwk(), "x": "not-a-point"}]}, "ec-1"),
        (lambda k: {"id": BANK, "algorithms": ["ES256"]}, "either"),
        (lambda k: {"id": BANK, "algorithms": ["ES256"], "keys": [k.ec.public_jwk()],
                    "resolve": "did:web"}, "either"),
        (lambda k: {"id": "bank", "algorithms": ["ES256"], "keys": [k.ec.public_jwk()]}, "id"),
        (lambda k: did_web_issuer("did:web:127.0.0.1", ["ES256"]), "IP"),
        (lambda k: did_web_issuer("did:key:z6Mk", ["ES256"]), "did:web"),
        (lambda k: {"id": BANK, "algorithms": ["ES256"], "resolve": "did:web", "ttl": 3},
         "ttl"),
    ],
)  # fmt: skip
def test_bad_entries_stop_the_load_with_a_clear_message(
    keys: Keys, mutate: Any, message: str
) -> None:
    with pytest.raises(TruststoreError, match=message) as caught:
        load(mutate(keys))
    assert "issuers" in str(caught.value)


def test_duplicate_issuers_and_bad_json_are_refused(keys: Keys) -> None:
    entry = static_issuer(BANK, [keys.ec])
    with pytest.raises(TruststoreError, match="duplicate issuer"):
        load(entry, entry)
    with pytest.raises(TruststoreError):
        parse_truststore("{not json")
    with pytest.raises(TruststoreError):
        parse_truststore('{"issuers": [], "extra": 1}')


def test_sources_file_inline_or_none(tmp_path: Path, keys: Keys) -> None:
    content = json.dumps({"issuers": [static_issuer(BANK, [keys.ed])]})
    path = tmp_path / "truststore.json"
    path.write_text(content)
    assert list(load_truststore(path=path).issuers) == [BANK]
    assert list(load_truststore(inline=content).issuers) == [BANK]
    assert load_truststore().issuers == {}
    with pytest.raises(TruststoreError, match=r"missing\.json"):
        load_truststore(path=tmp_path / "missing.json")


def test_settings_defaults_and_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("VERIFIER_TRUSTSTORE_PATH", "VERIFIER_TRUSTSTORE_JSON", "VERIFIER_SSRF_ALLOWLIST"):
        monkeypatch.delenv(name, raising=False)
    settings = VerifierSettings()
    assert settings.max_token_bytes == 16 * 1024
    assert settings.leeway_seconds == 30
    assert settings.ssrf_allowlist_entries == ()
    assert settings.ssrf_policy.require_https
    monkeypatch.setenv("VERIFIER_SSRF_ALLOWLIST", "127.0.0.1, localhost,,10.0.0.0/8")
    allowing = VerifierSettings()
    assert allowing.ssrf_allowlist_entries == ("127.0.0.1", "localhost", "10.0.0.0/8")
    assert allowing.ssrf_policy.host_allowlisted("localhost")
    monkeypatch.setenv("VERIFIER_LEEWAY_SECONDS", "61")
    with pytest.raises(ValidationError):
        VerifierSettings()
    monkeypatch.setenv("VERIFIER_LEEWAY_SECONDS", "60")
    monkeypatch.setenv("VERIFIER_TRUSTSTORE_PATH", "/nonexistent.json")
    monkeypatch.setenv("VERIFIER_TRUSTSTORE_JSON", "{}")
    with pytest.raises(ValidationError, match="not both"):
        VerifierSettings()
