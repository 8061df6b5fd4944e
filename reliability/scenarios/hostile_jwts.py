"""Hostile mandate JWTs through the PUBLIC api (POST /api/v1/mandates), not just the verifier.

The tenant trusts two issuers: one with static keys (EC P-256 and RSA, ES256/RS256) and one
resolved over did:web from a local HTTPS server (the harness's jose.DidServer, with its own
CA and an allow-list for it). Every attack of the reference's list is sent, many against both
issuers. A recording HTTP server stands behind every URL an attacker can name (`jku`, `x5u`,
URL-shaped `kid`s); the only request the system may make is the did:web issuer's own document.

Expected: each token stored REJECTED with the right verification status, or refused by the api
(413 too large, 422 not a string), never ACTIVE; and zero fetches of attacker URLs. Two valid
tokens, one per issuer, are controls: they must become ACTIVE, proving the path works.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import tempfile
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mandate_vault_harness.jose import (
    DidServer,
    SigningKey,
    b64,
    b64json,
    ec_key,
    forge,
    make_tls,
    mandate_claims,
    rsa_key,
    sign,
    static_issuer,
)
from mandate_vault_harness.system import System, server_errors
from reliability.core import Findings, Row, Scale

NAME = "hostile mandate JWTs"
BANK = "did:web:bank.example.com"
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


@dataclass(frozen=True)
class Case:
    name: str
    body: Any  # the JSON body posted (usually {"vc_jwt": token})
    expect: frozenset[str]  # verification statuses, or "HTTP 413" / "HTTP 422"


class Recorder:
    """A plain HTTP server that records every request: attacker URLs point here."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                recorder.requests.append(self.path)
                body = json.dumps({"keys": []}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET  # noqa: N815

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self._server.server_address[1])
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self._server.shutdown()


def _expect(*statuses: str) -> frozenset[str]:
    return frozenset(statuses)


def _token(case: str, token: str, *statuses: str) -> Case:
    return Case(case, {"vc_jwt": token}, _expect(*statuses))


def _hs(alg: str, secret: bytes, claims: dict[str, Any], kid: str) -> str:
    head = b64json({"alg": alg, "typ": "JWT", "kid": kid})
    body = b64json(claims)
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    return f"{head}.{body}.{b64(hmac.new(secret, f'{head}.{body}'.encode(), digest).digest())}"


def _x5c_attack(tls_dir: Path, claims: dict[str, Any]) -> str:
    """The classic x5c attack: sign with your own key and embed your own certificate."""
    tls = make_tls(tls_dir)
    cert = x509.load_pem_x509_certificate(tls.cert_file.read_bytes())
    private = serialization.load_pem_private_key(tls.key_file.read_bytes(), None)
    chain = [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]
    attacker = SigningKey("attacker", "ES256", private)
    return forge({"alg": "ES256", "kid": "attacker", "x5c": chain}, claims, attacker)


@dataclass(frozen=True)
class _Kit:
    """What the attacks are made from: the trusted keys, valid claims and the servers."""

    ec: SigningKey
    rsa: SigningKey
    did_key: SigningKey
    did: str
    recorder: Recorder
    did_server: DidServer
    tls_dir: Path
    now: int
    bank: dict[str, Any]  # valid claims of the static issuer
    on_did: dict[str, Any]  # valid claims of the did:web issuer

    def both_issuers(self) -> tuple[tuple[SigningKey, dict[str, Any], str], ...]:
        return ((self.ec, self.bank, "static"), (self.did_key, self.on_did, "did:web"))


def _alg_none(kit: _Kit) -> list[Case]:
    """alg none, every case variant, with and without a signature."""
    good_sig = sign(kit.ec, kit.bank).rsplit(".", 1)[1]
    cases = []
    for variant in ("none", "None", "NONE", "nOnE", "noNe", " none"):
        token = forge({"alg": variant, "typ": "JWT", "kid": kit.ec.kid}, kit.bank)
        cases.append(_token(f"alg {variant!r}, no signature", token, "ALG_NOT_ALLOWED"))
        cases.append(
            _token(f"alg {variant!r} + a real signature", token + good_sig, "ALG_NOT_ALLOWED")
        )
    return cases


def _empty_signatures(kit: _Kit) -> list[Case]:
    """Empty and all-zero signatures."""
    cases = []
    for key, claims, who in kit.both_issuers():
        head, body, sig = sign(key, claims).split(".")
        cases.append(_token(f"empty signature ({who})", f"{head}.{body}.", "SIG_INVALID"))
        zeros = b64(bytes(len(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)))))
        cases.append(_token(f"all-zero signature ({who})", f"{head}.{body}.{zeros}", "SIG_INVALID"))
    head, body, _ = sign(kit.rsa, kit.bank).split(".")
    cases.append(
        _token("all-zero RSA signature", f"{head}.{body}.{b64(bytes(256))}", "SIG_INVALID")
    )
    return cases


def _hmac_with_public_keys(kit: _Kit) -> list[Case]:
    """HMAC keyed with an issuer's public key."""
    ec, rsa, did_key = kit.ec, kit.rsa, kit.did_key
    keyings = [
        (f"{alg} keyed with the RSA public key (PEM)", alg, rsa.public_pem(), kit.bank, rsa.kid)
        for alg in ("HS256", "HS384", "HS512")
    ]
    keyings += [
        (
            "HS256 keyed with the EC public JWK",
            "HS256",
            json.dumps(ec.public_jwk()).encode(),
            kit.bank,
            ec.kid,
        ),
        (
            "HS256 keyed with the did:web key (PEM)",
            "HS256",
            did_key.public_pem(),
            kit.on_did,
            did_key.kid,
        ),
    ]
    return [
        _token(label, _hs(alg, secret, claims, kid), "ALG_NOT_ALLOWED")
        for label, alg, secret, claims, kid in keyings
    ]


def _key_choosing_headers(kit: _Kit) -> list[Case]:
    """Headers that choose the key, each pointing at something the attacker controls."""
    attacker = ec_key("attacker")
    headers: list[tuple[str, Any]] = [
        ("jku", kit.recorder.url("/jwks.json")),
        ("jku", f"https://localhost:{kit.did_server.port}/attacker/jwks.json"),
        ("x5u", kit.recorder.url("/cert.pem")),
        ("jwk", attacker.public_jwk()),
    ]
    cases = [
        _token(
            f"{name} -> attacker ({who})",
            forge({"alg": "ES256", "kid": "attacker", name: value}, claims, attacker),
            "HEADER_NOT_ALLOWED",
        )
        for claims, who in ((kit.bank, "static"), (kit.on_did, "did:web"))
        for name, value in headers
    ]
    x5c = _x5c_attack(kit.tls_dir, kit.bank)
    cases.append(_token("x5c with the attacker's own certificate", x5c, "HEADER_NOT_ALLOWED"))
    return cases


def _kid_injection(kit: _Kit) -> list[Case]:
    """kid injection: each only ever an unknown key."""
    cases = []
    for kid in (
        "../../dev/null",
        "../../../../etc/passwd",
        "' OR 1=1 --",
        "key'; DROP TABLE mandates; --",
        "ec-1\x00",
        "EC-1",
        kit.recorder.url("/kid"),
        "k" * 10 * 1024,
    ):
        label = kid if len(kid) < 40 else f"{kid[:8]}... ({len(kid)} chars)"
        cases.append(_token(f"kid {label!r}", sign(kit.ec.with_kid(kid), kit.bank), "KEY_UNKNOWN"))
    for kid in ("../.well-known/did.json", f"{kit.did}#../../x", kit.recorder.url("/kid")):
        token = sign(kit.did_key.with_kid(kid), kit.on_did)
        cases.append(_token(f"kid {kid[:30]!r} (did:web)", token, "KEY_UNKNOWN"))
    return cases


def _critical_extensions(kit: _Kit) -> list[Case]:
    """Unknown critical extensions."""
    cases = []
    for extension in (
        {"crit": ["http://example.com/unknown"], "http://example.com/unknown": 1},
        {"crit": ["exp"], "exp": kit.now + 60},
        {"crit": ["b64"], "b64": False},
    ):
        token = forge({"alg": "ES256", "kid": kit.ec.kid, **extension}, kit.bank, kit.ec)
        cases.append(_token(f"crit {extension['crit']}", token, "HEADER_NOT_ALLOWED"))
    return cases


def _nested_and_jwe(kit: _Kit) -> list[Case]:
    """A JWT nested in a JWT, and JWE where a JWS belongs."""
    ec = kit.ec
    inner = b64(sign(ec, kit.bank).encode())
    jwe_head = b64json({"alg": "RSA-OAEP", "enc": "A256GCM", "kid": kit.rsa.kid})
    jwe = f"{jwe_head}.{b64(bytes(256))}.{b64(bytes(12))}.{b64(b'ciphertext')}.{b64(bytes(16))}"
    return [
        _token(
            "nested JWT (cty JWT)",
            forge({"alg": "ES256", "kid": ec.kid, "cty": "JWT"}, inner, ec),
            "INVALID_FORMAT",
        ),
        _token(
            "nested JWT (no cty)",
            forge({"alg": "ES256", "kid": ec.kid}, inner, ec),
            "INVALID_FORMAT",
        ),
        _token("JWE (five segments)", jwe, "INVALID_FORMAT"),
        _token(
            "JWE header in a JWS",
            forge({"alg": "ES256", "kid": ec.kid, "enc": "A256GCM"}, kit.bank, ec),
            "INVALID_FORMAT",
        ),
    ]


def _oversized(kit: _Kit) -> list[Case]:
    big = sign(kit.ec, mandate_claims(BANK, pad="p" * 17_000))
    return [
        _token(f"token of {len(big)} bytes (cap 16 KiB)", big, "HTTP 413"),
        Case("request body of 200 KB", {"vc_jwt": "a" * 200_000}, _expect("HTTP 413")),
    ]


def _skewed_times(kit: _Kit) -> list[Case]:
    """Times outside the verifier's leeway of 30 s, and time claims of the wrong shape."""
    now = kit.now
    cases = [
        _token(label, sign(kit.ec, claims), status)
        for label, claims, status in (
            ("exp 31 s ago", mandate_claims(BANK, exp=now - 31), "EXPIRED"),
            ("exp 1 day ago", mandate_claims(BANK, exp=now - 86_400), "EXPIRED"),
            ("nbf in 10 min", mandate_claims(BANK, nbf=now + 600), "NOT_YET_VALID"),
            ("iat in 10 min", mandate_claims(BANK, iat=now + 600), "NOT_YET_VALID"),
            ("exp 2^60 (beyond I-JSON)", mandate_claims(BANK, exp=2**60), "INVALID_FORMAT"),
            ("exp as a string", mandate_claims(BANK, exp=str(now + 600)), "CLAIMS_INVALID"),
            ("no exp", {k: v for k, v in kit.bank.items() if k != "exp"}, "MISSING_REQUIRED_FIELD"),
        )
    ]
    expired = sign(kit.did_key, mandate_claims(kit.did, exp=now - 86_400))
    cases.append(_token("exp 1 day ago (did:web)", expired, "EXPIRED"))
    return cases


def _mismatched_algorithms(kit: _Kit) -> list[Case]:
    """Key types and algorithms that do not belong together."""
    ec, rsa, bank = kit.ec, kit.rsa, kit.bank
    tokens = (
        ("RSA kid, ES256 signed by EC key", forge({"alg": "ES256", "kid": rsa.kid}, bank, ec)),
        ("EC kid, RS256 signed by RSA key", forge({"alg": "RS256", "kid": ec.kid}, bank, rsa)),
        ("PS256 (issuer allows RS256)", sign(rsa.with_kid(rsa.kid, "PS256"), bank)),
        (
            "ES384 on a P-256 issuer",
            forge({"alg": "ES384", "kid": ec.kid}, bank, ec_key("e", alg="ES384")),
        ),
    )
    return [_token(label, token, "ALG_NOT_ALLOWED") for label, token in tokens]


def _degenerate_ecdsa(kit: _Kit) -> list[Case]:
    """ECDSA signatures with r = s = 0 and r = s = n."""
    order = P256_ORDER.to_bytes(32, "big")
    cases = []
    for label, signature in (("r = s = 0", bytes(64)), ("r = s = n", order + order)):
        for key, claims, who in kit.both_issuers():
            token = forge({"alg": "ES256", "kid": key.kid}, claims) + b64(signature)
            suffix = "" if who == "static" else f" ({who})"
            cases.append(_token(f"ECDSA {label}{suffix}", token, "SIG_INVALID"))
    return cases


def _malformed_base64(kit: _Kit) -> list[Case]:
    """Truncated and padded base64, wrong segment counts."""
    head, body, sig = sign(kit.ec, kit.bank).split(".")
    return [
        # the api refuses a vc_jwt outside printable ASCII itself (422) before the verifier
        _token(label, token, "INVALID_FORMAT", "HTTP 422")
        for label, token in (
            ("header truncated", f"{head[:-3]}.{body}.{sig}"),
            ("payload truncated", f"{head}.{body[:-5]}.{sig}"),
            ("signature padded with =", f"{head}.{body}.{sig}{'=' * (-len(sig) % 4 or 4)}"),
            ("payload padded with =", f"{head}.{body}==.{sig}"),
            ("standard alphabet +/", f"{head}.{body}.{sig[:-2]}+/"),
            ("whitespace inside", f"{head}.{body} .{sig}"),
            ("four segments", f"{head}.{body}.{sig}.{sig}"),
            ("two segments", f"{head}.{body}"),
            ("non-ASCII", f"{head}.{body}.{sig[:-1]}\u00e9"),
        )
    ]


def _forged_content(kit: _Kit) -> list[Case]:
    """Forged content, strangers' keys, untrusted issuers, oversized claims."""
    ec, bank = kit.ec, kit.bank
    head, _, sig = sign(ec, bank).split(".")
    richer = mandate_claims(BANK)
    richer["vc"]["credentialSubject"]["amountLimit"] = "1000000.00"
    stranger_ec = SigningKey(ec.kid, "ES256", ec_key("x").private)
    long_iss = "did:web:" + "a" * 600 + ".example"
    long_sub = mandate_claims(BANK, sub="did:example:" + "s" * 2000)
    dup = b64(b'{"alg":"ES256","kid":"ec-1","kid":"rsa-1"}')
    return [
        _token(
            "payload swapped under a valid signature",
            f"{head}.{b64json(richer)}.{sig}",
            "SIG_INVALID",
        ),
        _token("stranger's key, trusted kid", sign(stranger_ec, bank), "SIG_INVALID"),
        _token(
            "untrusted issuer", sign(ec, mandate_claims("did:web:evil.example")), "ISSUER_UNKNOWN"
        ),
        _token("untrusted iss of 600+ chars", sign(ec, mandate_claims(long_iss)), "ISSUER_UNKNOWN"),
        _token("sub of 2,000 chars", sign(ec, long_sub), "CLAIMS_INVALID", "HTTP 422"),
        _token("duplicate header members", forge(dup, bank, ec), "INVALID_FORMAT"),
    ]


def _not_a_token(kit: _Kit) -> list[Case]:
    """Bodies the api's own validation refuses."""
    smuggled = {"vc_jwt": forge({"alg": "none"}, kit.bank), "status": "ACTIVE"}
    return [
        Case("vc_jwt is a number", {"vc_jwt": 12345}, _expect("HTTP 422")),
        Case("vc_jwt is empty", {"vc_jwt": ""}, _expect("HTTP 422")),
        Case("vc_jwt is null", {"vc_jwt": None}, _expect("HTTP 422")),
        Case("vc_jwt + status ACTIVE smuggled", smuggled, _expect("HTTP 422")),
    ]


# the attacks, in the order they are sent
_ATTACKS = (
    _alg_none,
    _empty_signatures,
    _hmac_with_public_keys,
    _key_choosing_headers,
    _kid_injection,
    _critical_extensions,
    _nested_and_jwe,
    _oversized,
    _skewed_times,
    _mismatched_algorithms,
    _degenerate_ecdsa,
    _malformed_base64,
    _forged_content,
    _not_a_token,
)


def build_cases(
    ec: SigningKey,
    rsa: SigningKey,
    did_key: SigningKey,
    did: str,
    recorder: Recorder,
    did_server: DidServer,
    tls_dir: Path,
) -> list[Case]:
    kit = _Kit(
        ec,
        rsa,
        did_key,
        did,
        recorder,
        did_server,
        tls_dir,
        now=int(time.time()),
        bank=mandate_claims(BANK),
        on_did=mandate_claims(did),
    )
    return [case for attack in _ATTACKS for case in attack(kit)]


def _judge(response: httpx.Response, case: Case) -> tuple[str, str | None]:
    """(outcome, problem): outcome is the verification status or "HTTP nnn"."""
    if response.status_code != 201:
        outcome = f"HTTP {response.status_code}"
        return outcome, None if outcome in case.expect else f"{case.name}: {outcome}"
    body = response.json()
    outcome = body["verification_status"]
    if body["status"] == "ACTIVE":
        return outcome, f"{case.name}: stored ACTIVE ({outcome})"
    if body["status"] != "REJECTED" or outcome not in case.expect:
        return outcome, f"{case.name}: {body['status']} {outcome}, want {sorted(case.expect)}"
    return outcome, None


@dataclass(frozen=True)
class _Issuers:
    """The tenant's two trusted issuers: static keys, and did:web served by the `DidServer`."""

    ec: SigningKey
    rsa: SigningKey
    did_key: SigningKey
    did: str
    document_path: str  # the one request the system may make

    @classmethod
    def publish(cls, did_server: DidServer) -> _Issuers:
        ec, rsa, did_key = ec_key("ec-1"), rsa_key("rsa-1"), ec_key("key-1")
        did = did_server.did("issuer")
        return cls(ec, rsa, did_key, did, did_server.publish(did, [did_key], "issuer"))

    def truststore(self) -> str:
        return json.dumps(
            {
                "issuers": [
                    static_issuer(BANK, [self.ec, self.rsa], ["ES256", "RS256"]),
                    {"id": self.did, "algorithms": ["ES256"], "resolve": "did:web"},
                ]
            }
        )

    def control_tokens(self) -> list[str]:
        """One valid token per issuer."""
        return [sign(self.ec, mandate_claims(BANK)), sign(self.did_key, mandate_claims(self.did))]


@dataclass(frozen=True)
class _Answers:
    """What the api answered to the controls and the cases, and what it stored."""

    controls: list[httpx.Response]
    outcomes: dict[str, int]
    resets: int  # kept-alive connections the server dropped
    active: httpx.Response
    listed: httpx.Response

    def control_status(self) -> list[Any]:
        return [
            r.json().get("status") if r.status_code == 201 else r.status_code for r in self.controls
        ]

    def active_ids(self) -> tuple[set[str], set[str]]:
        """(ids of the ACTIVE mandates, ids of the stored controls)."""
        active_ids = {m["id"] for m in self.active.json()["items"]}
        control_ids = {r.json()["id"] for r in self.controls if r.status_code == 201}
        return active_ids, control_ids

    def stored_rejected(self) -> int:
        return len(self.listed.json()["items"]) - len(self.controls)


def _start_for_did_web(system: System, ca_file: Path) -> str:
    """Restart the verifier so it resolves did:web from the local server, start the api."""
    system.verifier.stop()  # type: ignore[union-attr]
    system.start_verifier(
        wait=False,
        VERIFIER_SSRF_ALLOWLIST="127.0.0.1,localhost",
        VERIFIER_DID_WEB_CA_FILE=str(ca_file),
    )
    api = system.start_api(wait=False)
    system.ready()
    return api.url


def _post_case(
    c: httpx.Client, case: Case, api_url: str, headers: dict[str, str]
) -> tuple[httpx.Response, bool]:
    """The api's answer to one case, and whether the kept-alive connection was dropped."""
    try:
        return c.post("/api/v1/mandates", json=case.body), False
    except httpx.TransportError:
        # the server dropped the kept-alive connection (after a 500 it
        # closes it): ask again on a fresh one to learn this case's answer
        response = httpx.post(
            f"{api_url}/api/v1/mandates", json=case.body, headers=headers, timeout=15
        )
        return response, True


def _send(
    api_url: str, headers: dict[str, str], issuers: _Issuers, cases: list[Case], findings: Findings
) -> _Answers:
    """Post the controls and every case, judging each answer; then list what was stored."""
    outcomes: dict[str, int] = {}
    resets = 0
    with httpx.Client(base_url=api_url, headers=headers, timeout=15) as c:
        controls = [
            c.post("/api/v1/mandates", json={"vc_jwt": token}) for token in issuers.control_tokens()
        ]
        for case in cases:
            response, reset = _post_case(c, case, api_url, headers)
            resets += reset
            outcome, problem = _judge(response, case)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            if problem:
                findings.check(False, problem)
        active = c.get("/api/v1/mandates", params={"status": "ACTIVE", "limit": 200})
        listed = c.get("/api/v1/mandates", params={"limit": 200})
    return _Answers(controls, outcomes, resets, active, listed)


def _report(
    findings: Findings,
    cases: list[Case],
    answers: _Answers,
    five_xx: dict[str, int],
    fetches: tuple[list[str], int],
) -> Row:
    """The verdict; `fetches` are (attacker URLs fetched, fetches of the did:web document)."""
    attacker_fetches, did_document_fetches = fetches
    control_status = answers.control_status()
    findings.check(
        control_status == ["ACTIVE", "ACTIVE"],
        f"the valid controls were not ACTIVE: {control_status}",
    )
    active_ids, control_ids = answers.active_ids()
    active_hostile, stored = len(active_ids - control_ids), answers.stored_rejected()
    findings.check(active_ids == control_ids, f"{active_hostile} hostile mandates are ACTIVE")
    findings.check(not attacker_fetches, f"outbound fetches of attacker URLs: {attacker_fetches}")
    for cause, n in five_xx.items():
        findings.check(False, f"server error: {cause} (x{n})")
    outcomes = answers.outcomes
    figures = {
        "hostile_tokens": len(cases),
        "outcomes": dict(sorted(outcomes.items())),
        "stored_rejected": stored,
        "active_hostile": active_hostile,
        "attacker_url_fetches": len(attacker_fetches),
        "did_document_fetches": did_document_fetches,
        "controls": control_status,
        "kept_alive_connections_dropped": answers.resets,
    }
    tried = (
        f"{len(cases)} hostile tokens via POST /api/v1/mandates against a static and a did:web "
        "issuer (alg none x6, empty/zero signatures, HS* with public keys, jku/x5u/jwk/x5c, "
        "kid injection, crit, nested, JWE, oversized, skewed times, key-type mismatch, "
        "r=s=0/n, bad base64)"
    )
    leaked = (
        f"{active_hostile} ACTIVE, {stored} stored REJECTED, "
        f"{sum(n for o, n in outcomes.items() if o.startswith('HTTP'))} refused 413/422; "
        f"{len(attacker_fetches)} outbound fetches"
    )
    return findings.row(NAME, tried, leaked, figures)


def run(scale: Scale) -> Row:
    del scale  # every case runs in both modes: they take a second or two
    findings = Findings()
    recorder = Recorder()
    with tempfile.TemporaryDirectory(prefix="mv-reliability-tls-") as tmp:
        tls_dir = Path(tmp)
        tls = make_tls(tls_dir)
        did_server = DidServer(tls)
        issuers = _Issuers.publish(did_server)
        attack_dir = tls_dir / "attacker"
        attack_dir.mkdir()
        cases = build_cases(
            issuers.ec, issuers.rsa, issuers.did_key, issuers.did, recorder, did_server, attack_dir
        )
        try:
            with System(issuers=[], truststore=issuers.truststore(), broker=False) as system:
                api_url = _start_for_did_web(system, tls.ca_file)
                tenant = system.add_tenant(issuers=[BANK, issuers.did])
                answers = _send(api_url, tenant.headers(), issuers, cases, findings)
                five_xx = server_errors(system.processes(), include_503=True)
        finally:
            recorder.close()
            did_server.close()
    attacker_fetches = list(recorder.requests) + [
        p for p in did_server.requests if p != issuers.document_path
    ]
    fetches = (attacker_fetches, did_server.requests.count(issuers.document_path))
    return _report(findings, cases, answers, five_xx, fetches)
