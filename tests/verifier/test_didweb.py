"""did:web: the DID-to-URL mapping, documents, and resolution over real HTTPS."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from mandate_vault_harness.jose import (
    DidServer,
    Keys,
    Reply,
    VerifierFactory,
    did_document,
    did_web_issuer,
    forge,
    mandate_claims,
    sign,
)
from mandate_vault_verifier.didweb import (
    InvalidDid,
    InvalidDidDocument,
    did_web_url,
    parse_did_document,
)
from mandate_vault_verifier.statuses import VerificationStatus as S


@pytest.mark.parametrize(
    ("did", "url"),
    [
        ("did:web:example.com", "https://example.com/.well-known/did.json"),
        ("did:web:example.com:user:alice", "https://example.com/user/alice/did.json"),
        ("did:web:example.com%3A8443", "https://example.com:8443/.well-known/did.json"),
        ("did:web:example.com%3a8443:a", "https://example.com:8443/a/did.json"),
        ("did:web:Bank.Example.COM", "https://bank.example.com/.well-known/did.json"),
        ("did:web:localhost%3A9443:issuers:x-1", "https://localhost:9443/issuers/x-1/did.json"),
        ("did:web:w3c-ccg.github.io:user:alice", "https://w3c-ccg.github.io/user/alice/did.json"),
    ],
)
def test_did_to_url(did: str, url: str) -> None:
    assert str(did_web_url(did)) == url


@pytest.mark.parametrize(
    "did",
    [
        "did:web:127.0.0.1", "did:web:2130706433", "did:web:0x7f.1", "did:web:10.0.0.1%3A443",
        "did:web:%5B::1%5D", "did:web:[::1]", "did:web:169.254.169.254:latest:meta-data",
        "did:web:example.com:..:admin", "did:web:example.com:.", "did:web:example.com:a%2Fb",
        "did:web:example.com::a", "did:web:example.com%3A0", "did:web:example.com%3A99999",
        "did:web:example.com%3Ahttp", "did:web:exa%6Dple.com", "did:web:", "did:web",
        "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK", "did:web:-bad.example",
        "did:web:example.com/path", "did:web:user@example.com", "did:web:example.com#frag",
    ],
)  # fmt: skip
def test_dids_that_cannot_be_resolved(did: str) -> None:
    with pytest.raises(InvalidDid):
        did_web_url(did)


DID = "did:web:issuer.example"


def doc(keys: list[Any], **changes: Any) -> bytes:
    document = did_document(DID, keys)
    document.update(changes)
    return json.dumps(document).encode()


def test_document_keys_by_full_id_and_fragment(keys: Keys) -> None:
    found = parse_did_document(DID, doc([keys.ec, keys.ed]), frozenset({"ES256", "EdDSA"}))
    assert found["ec-1"] is found[f"{DID}#ec-1"]
    assert found["ed-1"].kid == f"{DID}#ed-1"


def test_document_checks(keys: Keys) -> None:
    algs = frozenset({"ES256"})
    with pytest.raises(InvalidDidDocument, match="id"):
        parse_did_document(DID, doc([keys.ec], id="did:web:evil.example"), algs)
    with pytest.raises(InvalidDidDocument, match="verificationMethod"):
        parse_did_document(DID, doc([], verificationMethod=[]), algs)
    with pytest.raises(InvalidDidDocument, match="JSON"):
        parse_did_document(DID, b"<html>", algs)
    with pytest.raises(InvalidDidDocument, match="usable"):
        parse_did_document(DID, doc([keys.ed]), algs)  # no ES256 key in it


def test_foreign_private_and_odd_methods_are_skipped(keys: Keys) -> None:
    good = did_document(DID, [keys.ec])["verificationMethod"][0]
    methods = [
        {**good, "id": "did:web:evil.example#ec-1"},
        {**good, "id": f"{DID}#other", "controller": "did:web:evil.example"},
        {**good, "id": f"{DID}#private", "publicKeyJwk": {**good["publicKeyJwk"], "d": "AA"}},
        {**good, "id": f"{DID}#multibase", "publicKeyJwk": None},
        "not an object",
        {**good, "id": "#relative"},
    ]
    found = parse_did_document(DID, doc([], verificationMethod=methods), frozenset({"ES256"}))
    assert set(found) == {f"{DID}#relative", "relative"}


# --- resolution over HTTPS ------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
@pytest.mark.parametrize("kid_form", ["fragment", "full"])
async def test_a_did_web_issuer_verifies(
    make_verifier: VerifierFactory, did_server: DidServer, keys: Keys, alg: str, kid_form: str
) -> None:
    did = did_server.did("issuers", "bank")
    did_server.publish(did, [keys.rsa, keys.ec, keys.ed], "issuers", "bank")
    verifier = make_verifier([did_web_issuer(did, ["RS256", "ES256", "EdDSA"])])
    key = keys.by_alg(alg)
    kid = key.kid if kid_form == "fragment" else f"{did}#{key.kid}"
    result = await verifier.verify(sign(key.with_kid(kid), mandate_claims(did)))
    assert result.status is S.VALID, result.reason
    assert result.key_id == f"{did}#{key.kid}"
    assert did_server.requests == ["/issuers/bank/did.json"]
    # cached: a second token, no second fetch
    assert (await verifier.verify(sign(key.with_kid(kid), mandate_claims(did)))).status is S.VALID
    assert len(did_server.requests) == 1


async def test_without_the_allow_list_the_same_server_is_refused(
    make_verifier: VerifierFactory, did_server: DidServer, keys: Keys
) -> None:
    did = did_server.did()
    did_server.publish(did, [keys.ec])
    verifier = make_verifier([did_web_issuer(did, ["ES256"])], allowlist=())
    result = await verifier.verify(sign(keys.ec, mandate_claims(did)))
    assert result.status is S.ISSUER_UNREACHABLE
    assert "loopback" in (result.reason or "")
    assert did_server.requests == []
    allowed = make_verifier([did_web_issuer(did, ["ES256"])])
    assert (await allowed.verify(sign(keys.ec, mandate_claims(did)))).status is S.VALID


async def test_a_certificate_from_an_untrusted_ca_is_refused(
    make_verifier: VerifierFactory, did_server: DidServer, keys: Keys
) -> None:
    did = did_server.did()
    did_server.publish(did, [keys.ec])
    verifier = make_verifier([did_web_issuer(did, ["ES256"])], trust_test_ca=False)
    result = await verifier.verify(sign(keys.ec, mandate_claims(did)))
    assert result.status is S.ISSUER_UNREACHABLE
    assert "Certificate" in (result.reason or "") or "SSL" in (result.reason or "")
    assert did_server.requests == []


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (Reply(404, b"{}"), "HTTP 404"),
        (Reply(302, b"", {"Location": "/elsewhere/did.json"}), "HTTP 302"),
        (Reply(200, b"x" * 70_000), "larger than"),
        (Reply(200, b"not json"), "not JSON"),
        (Reply(200, b'{"id": "did:web:someone.else"}'), "id"),
        (Reply(200, b"{}", delay=1.5), "TimeoutError"),
    ],
)
async def test_unusable_documents_make_the_issuer_unreachable(
    make_verifier: VerifierFactory, did_server: DidServer, keys: Keys, reply: Reply, reason: str
) -> None:
    did = did_server.did()
    did_server.replies[did_server.document_path()] = reply
    verifier = make_verifier([did_web_issuer(did, ["ES256"])], timeout=0.5)
    result = await verifier.verify(sign(keys.ec, mandate_claims(did)))
    assert result.status is S.ISSUER_UNREACHABLE
    assert reason in (result.reason or ""), result.reason
    assert did_server.requests == ["/.well-known/did.json"]  # never a redirect target


def _rejected_before_key_lookup(did: str, keys: Keys, url: str) -> list[tuple[Any, str]]:
    claims = mandate_claims(did)
    return [
        (S.ALG_NOT_ALLOWED, forge({"alg": "none", "kid": "ec-1"}, claims)),
        (S.HEADER_NOT_ALLOWED, sign(keys.ec, claims, jku=url)),
        (S.HEADER_NOT_ALLOWED, sign(keys.ec, claims, x5u=url)),
        (S.HEADER_NOT_ALLOWED, sign(keys.ec, claims, jwk=keys.ec.public_jwk())),
        (S.HEADER_NOT_ALLOWED, sign(keys.ec, claims, x5c=["MIIB"])),
        (S.HEADER_NOT_ALLOWED, forge({"alg": "ES256", "crit": ["x"], "x": 1}, claims, keys.ec)),
        (S.ALG_NOT_ALLOWED, forge({"alg": "HS256", "kid": "ec-1"}, claims) + "c2ln"),
        (S.TOKEN_TOO_LARGE, sign(keys.ec, mandate_claims(did, pad="p" * 20_000))),
        (S.INVALID_FORMAT, "a.b.c.d.e"),
        (S.INVALID_FORMAT, sign(keys.ec, claims) + "="),
        (S.ISSUER_UNKNOWN, sign(keys.ec, mandate_claims("did:web:evil.example"))),
        (S.ALG_NOT_ALLOWED, sign(keys.rsa, claims)),  # RS256: not one of the issuer's
    ]


async def test_tokens_refused_before_key_lookup_never_cause_a_fetch(
    make_verifier: VerifierFactory, did_server: DidServer, keys: Keys
) -> None:
    did = did_server.did()
    did_server.publish(did, [keys.ec])
    url = f"https://localhost:{did_server.port}/.well-known/did.json"
    verifier = make_verifier([did_web_issuer(did, ["ES256"])])
    for expected, token in _rejected_before_key_lookup(did, keys, url):
        result = await verifier.verify(token)
        assert result.status is expected, result.reason
    # the tenant's allow-list is checked before any fetch, too
    token = sign(keys.ec, mandate_claims(did))
    tenant = await verifier.verify(token, allowed_issuers=["did:web:x"])
    assert tenant.status is S.ISSUER_UNKNOWN
    assert did_server.requests == []
    assert (await verifier.verify(token)).status is S.VALID  # the server was there all along
    assert did_server.requests == ["/.well-known/did.json"]


async def test_one_fetch_per_issuer_at_a_time(
    make_verifier: VerifierFactory, did_server: DidServer, keys: Keys
) -> None:
    first, second = did_server.did("one"), did_server.did("two")
    did_server.publish(first, [keys.ec], "one", delay=0.5)
    did_server.publish(second, [keys.ed], "two", delay=0.5)
    verifier = make_verifier([did_web_issuer(first, ["ES256"]), did_web_issuer(second, ["EdDSA"])])
    tokens = [sign(keys.ec, mandate_claims(first)) for _ in range(20)]
    tokens += [sign(keys.ed, mandate_claims(second)) for _ in range(20)]
    results = await asyncio.gather(*(verifier.verify(token) for token in tokens))
    assert {r.status for r in results} == {S.VALID}
    # 40 verifications, one fetch per issuer ...
    assert sorted(did_server.requests) == ["/one/did.json", "/two/did.json"]
    # ... and the two fetches overlapped: no lock shared between issuers.
    earlier, later = did_server.arrivals
    assert later - earlier < 0.5, "the second issuer waited for the first one's fetch"


async def test_a_cancelled_caller_does_not_cancel_the_shared_fetch(
    make_verifier: VerifierFactory, did_server: DidServer, keys: Keys
) -> None:
    did = did_server.did()
    did_server.publish(did, [keys.ec], delay=0.3)
    verifier = make_verifier([did_web_issuer(did, ["ES256"])])
    token = sign(keys.ec, mandate_claims(did))
    impatient = asyncio.ensure_future(verifier.verify(token))
    patient = asyncio.ensure_future(verifier.verify(token))
    await asyncio.sleep(0.1)
    impatient.cancel()
    assert (await patient).status is S.VALID
    assert len(did_server.requests) == 1


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_keys_are_cached_for_the_ttl_and_failures_for_less(
    make_verifier: VerifierFactory, did_server: DidServer, keys: Keys
) -> None:
    clock = Clock()
    did = did_server.did()
    verifier = make_verifier([did_web_issuer(did, ["ES256"])], ttl=300, failure_ttl=30, clock=clock)
    token = sign(keys.ec, mandate_claims(did))
    assert (await verifier.verify(token)).status is S.ISSUER_UNREACHABLE  # 404: nothing yet
    did_server.publish(did, [keys.ec])
    clock.now += 29
    assert (await verifier.verify(token)).status is S.ISSUER_UNREACHABLE  # remembered failure
    assert len(did_server.requests) == 1
    clock.now += 2
    assert (await verifier.verify(token)).status is S.VALID
    assert len(did_server.requests) == 2
    # key rotation: the old key stays trusted until the TTL ends
    did_server.publish(did, [keys.stranger_ec])
    clock.now += 299
    assert (await verifier.verify(token)).status is S.VALID
    clock.now += 2
    assert (await verifier.verify(token)).status is S.SIG_INVALID
    assert len(did_server.requests) == 3
