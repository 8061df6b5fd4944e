"""Every JWT rule of the reference, each with real keys and real signed tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import pytest

from mandate_vault_harness.jose import (
    ALICE,
    Keys,
    VerifierFactory,
    b64,
    b64json,
    forge,
    mandate_claims,
    replace_segment,
    sign,
    static_issuer,
)
from mandate_vault_verifier.statuses import VerificationStatus as S
from mandate_vault_verifier.verifier import Verifier

BANK = "did:web:bank.example.com"
MAIN_ALGS = ["RS256", "ES256", "EdDSA"]
ALL_ALGS = ["RS256", "PS256", "ES256", "ES384", "EdDSA"]


@pytest.fixture
async def verifier(make_verifier: VerifierFactory, keys: Keys) -> Verifier:
    trusted = [keys.rsa, keys.ec, keys.ec384, keys.ed]
    return make_verifier([static_issuer(BANK, trusted, ALL_ALGS)])


def header(alg: str, kid: str, **extra: Any) -> dict[str, Any]:
    return {"alg": alg, "typ": "JWT", "kid": kid, **extra}


@pytest.mark.parametrize("alg", ALL_ALGS)
async def test_a_well_formed_mandate_is_valid(verifier: Verifier, keys: Keys, alg: str) -> None:
    key = keys.by_alg(alg)
    result = await verifier.verify(sign(key, mandate_claims(BANK)))
    assert result.status is S.VALID, result.reason
    assert (result.issuer, result.subject, result.key_id) == (BANK, ALICE, key.kid)
    assert result.issuer_label == BANK
    assert result.claims is not None
    assert result.claims["jti"] == "mandate-1"
    assert result.mandate is not None
    assert result.mandate.to_json()["amount_limit"] == "100.00"


@pytest.mark.parametrize("alg", MAIN_ALGS)
async def test_a_tampered_payload_or_a_strangers_signature_is_sig_invalid(
    verifier: Verifier, keys: Keys, alg: str
) -> None:
    key = keys.by_alg(alg)
    token = sign(key, mandate_claims(BANK))
    richer = mandate_claims(BANK)
    richer["vc"]["credentialSubject"]["amountLimit"] = "1000000.00"
    tampered = replace_segment(token, 1, b64json(richer))
    result = await verifier.verify(tampered)
    assert result.status is S.SIG_INVALID
    assert (result.claims, result.mandate) == (None, None)

    stranger = await verifier.verify(sign(keys.stranger(alg), mandate_claims(BANK)))
    assert stranger.status is S.SIG_INVALID


@pytest.mark.parametrize("variant", ["none", "None", "NONE", "nOnE", "noNe", " none"])
@pytest.mark.parametrize("with_signature", [False, True])
async def test_alg_none_is_refused_in_every_case_variant(
    verifier: Verifier, keys: Keys, variant: str, with_signature: bool
) -> None:
    token = forge({"alg": variant, "typ": "JWT", "kid": keys.rsa.kid}, mandate_claims(BANK))
    if with_signature:
        token += sign(keys.rsa, mandate_claims(BANK)).rsplit(".", 1)[1]
    result = await verifier.verify(token)
    assert result.status is S.ALG_NOT_ALLOWED
    assert result.claims is None


@pytest.mark.parametrize("alg", MAIN_ALGS)
async def test_empty_and_null_signatures_are_sig_invalid(
    verifier: Verifier, keys: Keys, alg: str
) -> None:
    key = keys.by_alg(alg)
    token = sign(key, mandate_claims(BANK))
    signature_length = len(forge(header(alg, key.kid), mandate_claims(BANK), key).split(".")[2])
    assert (await verifier.verify(replace_segment(token, 2, ""))).status is S.SIG_INVALID
    zeros = b64(bytes(len(b64_decode(token.split(".")[2]))))
    assert len(zeros) == signature_length
    assert (await verifier.verify(replace_segment(token, 2, zeros))).status is S.SIG_INVALID


def b64_decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


@pytest.mark.parametrize("alg", ["ES256", "ES384"])
async def test_ecdsa_r_and_s_zero_is_sig_invalid(verifier: Verifier, keys: Keys, alg: str) -> None:
    key = keys.by_alg(alg)
    size = 32 if alg == "ES256" else 48
    token = forge(header(alg, key.kid), mandate_claims(BANK))
    result = await verifier.verify(token + b64(bytes(2 * size)))
    assert result.status is S.SIG_INVALID
    # r = s = n (the curve order) is just as invalid
    order = {"ES256": 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
             "ES384": int("ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf"
                          "581a0db248b0a77aecec196accc52973", 16)}[alg]  # fmt: skip
    n = order.to_bytes(size, "big")
    assert (await verifier.verify(token + b64(n + n))).status is S.SIG_INVALID


@pytest.mark.parametrize("secret_form", ["pem", "jwk"])
@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
async def test_hmac_signed_with_the_issuers_public_key_is_refused(
    verifier: Verifier, keys: Keys, secret_form: str, alg: str
) -> None:
    secret = (
        keys.rsa.public_pem()
        if secret_form == "pem"
        else json.dumps(keys.rsa.public_jwk()).encode()
    )
    head = b64json(header(alg, keys.rsa.kid))
    body = b64json(mandate_claims(BANK))
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    mac = hmac.new(secret, f"{head}.{body}".encode(), digest).digest()
    result = await verifier.verify(f"{head}.{body}.{b64(mac)}")
    assert result.status is S.ALG_NOT_ALLOWED
    assert "HS" in (result.reason or "")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("jku", "https://attacker.example/jwks.json"),
        ("x5u", "https://attacker.example/cert.pem"),
        ("jwk", {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}),
        ("x5c", ["MIIBszCCAVmgAwIBAgIUQ"]),
    ],
)
@pytest.mark.parametrize("alg", MAIN_ALGS)
async def test_headers_that_choose_the_key_are_refused(
    verifier: Verifier, keys: Keys, name: str, value: Any, alg: str
) -> None:
    key = keys.by_alg(alg)
    token = sign(key, mandate_claims(BANK), **{name: value})
    result = await verifier.verify(token)
    assert result.status is S.HEADER_NOT_ALLOWED
    assert name in (result.reason or "")


@pytest.mark.parametrize(
    "kid",
    [
        "../../dev/null",
        "../../../../../../etc/passwd",
        '" OR "1"="1',
        "' OR 1=1 --",
        "key'; DROP TABLE keys; --",
        "rsa-1\x00",
        "RSA-1",
        "",
        "k" * 10 * 1024,
    ],
)
async def test_odd_kids_are_just_unknown_keys(verifier: Verifier, keys: Keys, kid: str) -> None:
    result = await verifier.verify(sign(keys.rsa.with_kid(kid), mandate_claims(BANK)))
    assert result.status is S.KEY_UNKNOWN
    assert result.key_id is None


async def test_a_kid_that_is_not_a_string_is_invalid_format(verifier: Verifier, keys: Keys) -> None:
    token = forge({"alg": "RS256", "kid": ["rsa-1"]}, mandate_claims(BANK), keys.rsa)
    assert (await verifier.verify(token)).status is S.INVALID_FORMAT


@pytest.mark.parametrize(
    "extension",
    [
        {"crit": ["exp"], "exp": 1},
        {"crit": ["http://example.com/unknown"], "http://example.com/unknown": True},
        {"crit": []},
        {"crit": "b64"},
        {"crit": ["b64"], "b64": False},
        {"b64": True},
    ],
)
@pytest.mark.parametrize("alg", MAIN_ALGS)
async def test_critical_extensions_are_refused(
    verifier: Verifier, keys: Keys, extension: dict[str, Any], alg: str
) -> None:
    key = keys.by_alg(alg)
    token = forge(header(alg, key.kid, **extension), mandate_claims(BANK), key)
    assert (await verifier.verify(token)).status is S.HEADER_NOT_ALLOWED


@pytest.mark.parametrize("cty", ["JWT", "jwt", "application/jwt"])
async def test_nested_jwts_are_refused(verifier: Verifier, keys: Keys, cty: str) -> None:
    inner = sign(keys.ec, mandate_claims(BANK))
    outer = forge(header("ES256", keys.ec.kid, cty=cty), b64(inner.encode()), keys.ec)
    assert (await verifier.verify(outer)).status is S.INVALID_FORMAT
    # the same without cty: the payload is still not a JSON object
    bare = forge(header("ES256", keys.ec.kid), b64(inner.encode()), keys.ec)
    assert (await verifier.verify(bare)).status is S.INVALID_FORMAT


async def test_jwe_is_refused(verifier: Verifier, keys: Keys) -> None:
    jwe_header = b64json({"alg": "RSA-OAEP", "enc": "A256GCM", "kid": keys.rsa.kid})
    five_parts = f"{jwe_header}.{b64(bytes(256))}.{b64(bytes(12))}.{b64(b'ct')}.{b64(bytes(16))}"
    result = await verifier.verify(five_parts)
    assert result.status is S.INVALID_FORMAT
    assert "JWE" in (result.reason or "")
    # enc in a three-part token is a JWE header too
    token = forge(header("ES256", keys.ec.kid, enc="A256GCM"), mandate_claims(BANK), keys.ec)
    assert (await verifier.verify(token)).status is S.INVALID_FORMAT


async def test_size_cap_applies_before_anything_else(
    make_verifier: VerifierFactory, keys: Keys
) -> None:
    verifier = make_verifier([static_issuer(BANK, [keys.ec])], max_token_bytes=2048)
    padding = "x" * 1000
    small = sign(keys.ec, mandate_claims(BANK, note=padding))
    assert len(small) <= 2048
    assert (await verifier.verify(small)).status is S.VALID
    big = sign(keys.ec, mandate_claims(BANK, note=padding + "x" * 600))
    assert len(big) > 2048
    result = await verifier.verify(big)
    assert result.status is S.TOKEN_TOO_LARGE
    assert result.issuer is None  # nothing was decoded
    assert (await verifier.verify("a" * 10_000)).status is S.TOKEN_TOO_LARGE


@pytest.mark.parametrize(
    ("claim", "offset", "leeway", "expected"),
    [
        ("exp", -20, 30, S.VALID),
        ("exp", -40, 30, S.EXPIRED),
        ("exp", -5, 0, S.EXPIRED),
        ("exp", -50, 60, S.VALID),
        ("nbf", 20, 30, S.VALID),
        ("nbf", 40, 30, S.NOT_YET_VALID),
        ("iat", 20, 30, S.VALID),
        ("iat", 40, 30, S.NOT_YET_VALID),
        ("iat", 5, 0, S.NOT_YET_VALID),
    ],
)
@pytest.mark.parametrize("alg", MAIN_ALGS)
async def test_time_claims_with_leeway(
    make_verifier: VerifierFactory,
    keys: Keys,
    claim: str,
    offset: int,
    leeway: float,
    expected: S,
    alg: str,
) -> None:
    key = keys.by_alg(alg)
    verifier = make_verifier([static_issuer(BANK, [key])], leeway=leeway)
    now = int(time.time())
    claims = mandate_claims(BANK)
    claims[claim] = now + offset
    if claim == "iat":
        claims["nbf"] = now - 100
    result = await verifier.verify(sign(key, claims))
    assert result.status is expected, result.reason
    # signature verified: claims and mandate are reported whatever the time says
    assert result.claims is not None
    assert result.mandate is not None


async def test_leeway_is_capped_at_sixty_seconds(make_verifier: VerifierFactory) -> None:
    with pytest.raises(ValueError, match="leeway"):
        make_verifier([], leeway=61)


async def test_key_type_must_match_the_algorithm(
    make_verifier: VerifierFactory, keys: Keys
) -> None:
    verifier = make_verifier(
        [static_issuer(BANK, [keys.rsa, keys.ec, keys.ed], ["RS256", "ES256", "EdDSA"])]
    )
    # RSA key named, ES256 used (signed with the EC key): the RSA key cannot do ES256.
    cases = [
        (keys.ec.with_kid(keys.rsa.kid), "ES256"),
        (keys.rsa.with_kid(keys.ec.kid), "RS256"),
        (keys.ed.with_kid(keys.ec.kid), "EdDSA"),
        (keys.ec.with_kid(keys.ed.kid), "ES256"),
    ]
    for signer, alg in cases:
        token = forge(header(alg, signer.kid), mandate_claims(BANK), signer)
        result = await verifier.verify(token)
        assert result.status is S.ALG_NOT_ALLOWED, (signer.kid, alg)


async def test_a_jwk_alg_pins_the_key_to_one_algorithm(
    make_verifier: VerifierFactory, keys: Keys
) -> None:
    issuer = {"id": BANK, "algorithms": ["RS256", "PS256"],
              "keys": [keys.rsa.public_jwk(alg="RS256")]}  # fmt: skip
    verifier = make_verifier([issuer])
    assert (await verifier.verify(sign(keys.rsa, mandate_claims(BANK)))).status is S.VALID
    result = await verifier.verify(sign(keys.ps, mandate_claims(BANK)))
    assert result.status is S.ALG_NOT_ALLOWED


@pytest.mark.parametrize("alg", MAIN_ALGS)
async def test_an_algorithm_outside_the_issuers_allow_list_is_refused(
    make_verifier: VerifierFactory, keys: Keys, alg: str
) -> None:
    allowed = "ES384"
    # The issuer allows ES384 only; tokens in other algorithms never reach a key.
    verifier = make_verifier(
        [{"id": BANK, "algorithms": [allowed], "keys": [keys.ec384.public_jwk()]}]
    )
    result = await verifier.verify(sign(keys.by_alg(alg), mandate_claims(BANK)))
    assert result.status is S.ALG_NOT_ALLOWED
    assert result.issuer_label == BANK


@pytest.mark.parametrize(
    "mutation",
    [
        "header_truncated",
        "payload_truncated",
        "signature_truncated_1",
        "signature_padded",
        "payload_padded",
        "header_padded",
        "standard_alphabet",
        "non_canonical",
        "whitespace",
        "four_parts",
        "two_parts",
        "non_ascii",
    ],
)
@pytest.mark.parametrize("alg", MAIN_ALGS)
async def test_malformed_base64_segments_are_invalid_format(
    verifier: Verifier, keys: Keys, mutation: str, alg: str
) -> None:
    token = sign(keys.by_alg(alg), mandate_claims(BANK))
    head, body, sig = token.split(".")
    mutated = {
        "header_truncated": f"{head[:-3]}.{body}.{sig}",
        "payload_truncated": f"{head}.{body[:-5]}.{sig}",
        "signature_truncated_1": f"{head}.{body}.{sig[: len(sig) - (len(sig) % 4 or 4) + 1]}",
        "signature_padded": f"{head}.{body}.{sig}{'=' * (-len(sig) % 4 or 4)}",
        "payload_padded": f"{head}.{body}==",
        "header_padded": f"{head}=.{body}.{sig}",
        "standard_alphabet": f"{head}.{body}.{sig[:-2]}+/",
        "non_canonical": f"{head}.{body}.{_flip_unused_bits(sig)}",
        "whitespace": f"{head}.{body} .{sig}",
        "four_parts": f"{head}.{body}.{sig}.{sig}",
        "two_parts": f"{head}.{body}",
        "non_ascii": f"{head}.{body}.{sig[:-1]}é",
    }[mutation]
    assert mutated != token
    result = await verifier.verify(mutated)
    assert result.status is S.INVALID_FORMAT, (mutation, result.reason)


def _flip_unused_bits(segment: str) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    remainder = len(segment) % 4
    if remainder == 0:
        return segment + "A"  # becomes length % 4 == 1: never valid
    last = alphabet.index(segment[-1])
    unused = 4 if remainder == 2 else 2  # bits that carry no data in the last character
    return segment[:-1] + alphabet[last ^ ((1 << unused) - 1)]


async def test_a_signature_shortened_by_whole_bytes_is_sig_invalid(
    verifier: Verifier, keys: Keys
) -> None:
    for alg in MAIN_ALGS:
        token = sign(keys.by_alg(alg), mandate_claims(BANK))
        head, body, sig = token.split(".")
        shorter = b64(b64_decode(sig)[:-1])
        assert (await verifier.verify(f"{head}.{body}.{shorter}")).status is S.SIG_INVALID


@pytest.mark.parametrize("where", ["header", "payload"])
async def test_duplicate_json_members_are_invalid_format(
    verifier: Verifier, keys: Keys, where: str
) -> None:
    good_header = json.dumps({"alg": "ES256", "kid": keys.ec.kid})
    good_payload = json.dumps(mandate_claims(BANK))
    if where == "header":
        head = b64(b'{"alg":"ES256","kid":"ec-1","kid":"rsa-1"}')
        body = b64(good_payload.encode())
    else:
        head = b64(good_header.encode())
        body = b64(good_payload[:-1].encode() + b',"iss":"did:web:evil.example"}')
    token = forge(head, body, keys.ec)
    assert (await verifier.verify(token)).status is S.INVALID_FORMAT


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"[1,2,3]", S.INVALID_FORMAT),
        (b'"a string"', S.INVALID_FORMAT),
        (b"{not json", S.INVALID_FORMAT),
        (b'{"exp": NaN}', S.INVALID_FORMAT),
        (b"\xff\xfe{}", S.INVALID_FORMAT),
        (b"[" * 3000 + b"]" * 3000, S.INVALID_FORMAT),
        (b'{"iss": "did:web:bank.example.com", "n": 1180591620717411303424}', S.INVALID_FORMAT),
        (b'{"iss": "did:web:bank.example.com", "n": -9007199254740992}', S.INVALID_FORMAT),
        (b'{"iss": "did:web:bank.example.com", "n": 1e400}', S.INVALID_FORMAT),
        (b'{"iss": "did:web:bank.example.com", "n": Infinity}', S.INVALID_FORMAT),
        (b'{"iss": "did:web:bank.example.com\\ud800"}', S.INVALID_FORMAT),
        (b'{"iss": "did:web:bank.example.com", "\\udfff": 1}', S.INVALID_FORMAT),
        (b'{"iss": "did:web:bank.example.com", "n": ["\\ud83d"]}', S.INVALID_FORMAT),
    ],
)
async def test_payloads_that_are_not_json_objects(
    verifier: Verifier, keys: Keys, payload: bytes, expected: S
) -> None:
    token = forge(header("ES256", keys.ec.kid), b64(payload), keys.ec)
    assert (await verifier.verify(token)).status is expected


async def test_escaped_unicode_that_is_text_is_fine(verifier: Verifier, keys: Keys) -> None:
    claims = json.dumps(mandate_claims(BANK, note="\U0001f600 caf\u00e9"), ensure_ascii=True)
    assert "\\ud83d\\ude00" in claims
    result = await verifier.verify(
        forge(header("ES256", keys.ec.kid), b64(claims.encode()), keys.ec)
    )
    assert result.status is S.VALID
    assert result.claims is not None
    assert result.claims["note"] == "\U0001f600 caf\u00e9"
    lone = forge(header("ES256", "ec-\ud800"), mandate_claims(BANK), keys.ec)
    assert (await verifier.verify(lone)).status is S.INVALID_FORMAT


async def test_unknown_issuers_and_the_tenant_allow_list(verifier: Verifier, keys: Keys) -> None:
    stranger = await verifier.verify(sign(keys.ec, mandate_claims("did:web:evil.example")))
    assert stranger.status is S.ISSUER_UNKNOWN
    assert (stranger.issuer, stranger.issuer_label) == ("did:web:evil.example", "untrusted")
    assert stranger.claims is None

    token = sign(keys.ec, mandate_claims(BANK))
    other_tenant = await verifier.verify(token, allowed_issuers=["did:web:other.example"])
    assert other_tenant.status is S.ISSUER_UNKNOWN
    assert other_tenant.issuer_label == BANK  # a truststore id: bounded label
    assert (await verifier.verify(token, allowed_issuers=[BANK])).status is S.VALID
    assert (await verifier.verify(token, allowed_issuers=[])).status is S.ISSUER_UNKNOWN


async def test_missing_iss_and_kid_rules(make_verifier: VerifierFactory, keys: Keys) -> None:
    single = make_verifier([static_issuer(BANK, [keys.ec])])
    claims = mandate_claims(BANK)
    del claims["iss"]
    result = await single.verify(sign(keys.ec, claims))
    assert result.status is S.MISSING_REQUIRED_FIELD
    assert result.issuer is None
    no_kid = forge({"alg": "ES256", "typ": "JWT"}, mandate_claims(BANK), keys.ec)
    assert (await single.verify(no_kid)).status is S.VALID  # the issuer's only key
    several = make_verifier([static_issuer(BANK, [keys.ec, keys.ed], ["ES256", "EdDSA"])])
    assert (await several.verify(no_kid)).status is S.KEY_UNKNOWN
    numeric = mandate_claims(BANK)
    numeric["iss"] = 42
    numeric_iss = forge({"alg": "ES256", "kid": "ec-1"}, numeric, keys.ec)
    assert (await single.verify(numeric_iss)).status is S.INVALID_FORMAT
