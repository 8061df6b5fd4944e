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


def build_cases(  # noqa: PLR0915 - the list of attacks, one after the other
    ec: SigningKey,
    rsa: SigningKey,
    did_key: SigningKey,
    did: str,
    recorder: Recorder,
    did_server: DidServer,
    tls_dir: Path,
) -> list[Case]:
    now = int(time.time())
    bank = mandate_claims(BANK)
    on_did = mandate_claims(did)
    attacker = ec_key("attacker")
    stranger_ec = SigningKey(ec.kid, "ES256", ec_key("x").private)
    cases: list[Case] = []
    add = cases.append

    # alg none, every case variant, with and without a signature
    good_sig = sign(ec, bank).rsplit(".", 1)[1]
    for variant in ("none", "None", "NONE", "nOnE", "noNe", " none"):
        token = forge({"alg": variant, "typ": "JWT", "kid": ec.kid}, bank)
        add(_token(f"alg {variant!r}, no signature", token, "ALG_NOT_ALLOWED"))
        add(_token(f"alg {variant!r} + a real signature", token + good_sig, "ALG_NOT_ALLOWED"))
    # empty and null signatures
    for key, claims, who in ((ec, bank, "static"), (did_key, on_did, "did:web")):
        head, body, sig = sign(key, claims).split(".")
        add(_token(f"empty signature ({who})", f"{head}.{body}.", "SIG_INVALID"))
        zeros = b64(bytes(len(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)))))
        add(_token(f"all-zero signature ({who})", f"{head}.{body}.{zeros}", "SIG_INVALID"))
    head, body, _ = sign(rsa, bank).split(".")
    add(_token("all-zero RSA signature", f"{head}.{body}.{b64(bytes(256))}", "SIG_INVALID"))
    # HMAC signed with the issuer's public key
    for alg in ("HS256", "HS384", "HS512"):
        add(
            _token(
                f"{alg} keyed with the RSA public key (PEM)",
                _hs(alg, rsa.public_pem(), bank, rsa.kid),
                "ALG_NOT_ALLOWED",
            )
        )
    add(
        _token(
            "HS256 keyed with the EC public JWK",
            _hs("HS256", json.dumps(ec.public_jwk()).encode(), bank, ec.kid),
            "ALG_NOT_ALLOWED",
        )
    )
    add(
        _token(
            "HS256 keyed with the did:web key (PEM)",
            _hs("HS256", did_key.public_pem(), on_did, did_key.kid),
            "ALG_NOT_ALLOWED",
        )
    )
    # headers that choose the key, each pointing at something the attacker controls
    for claims, who in ((bank, "static"), (on_did, "did:web")):
        headers: list[tuple[str, Any]] = [
            ("jku", recorder.url("/jwks.json")),
            ("jku", f"https://localhost:{did_server.port}/attacker/jwks.json"),
            ("x5u", recorder.url("/cert.pem")),
            ("jwk", attacker.public_jwk()),
        ]
        for name, value in headers:
            token = forge({"alg": "ES256", "kid": "attacker", name: value}, claims, attacker)
            add(_token(f"{name} -> attacker ({who})", token, "HEADER_NOT_ALLOWED"))
    add(
        _token(
            "x5c with the attacker's own certificate",
            _x5c_attack(tls_dir, bank),
            "HEADER_NOT_ALLOWED",
        )
    )
    # kid injection: each only ever an unknown key
    for kid in (
        "../../dev/null",
        "../../../../etc/passwd",
        "' OR 1=1 --",
        "key'; DROP TABLE mandates; --",
        "ec-1\x00",
        "EC-1",
        recorder.url("/kid"),
        "k" * 10 * 1024,
    ):
        label = kid if len(kid) < 40 else f"{kid[:8]}... ({len(kid)} chars)"
        add(_token(f"kid {label!r}", sign(ec.with_kid(kid), bank), "KEY_UNKNOWN"))
    for kid in ("../.well-known/did.json", f"{did}#../../x", recorder.url("/kid")):
        add(
            _token(
                f"kid {kid[:30]!r} (did:web)", sign(did_key.with_kid(kid), on_did), "KEY_UNKNOWN"
            )
        )
    # unknown critical extensions
    for extension in (
        {"crit": ["http://example.com/unknown"], "http://example.com/unknown": 1},
        {"crit": ["exp"], "exp": now + 60},
        {"crit": ["b64"], "b64": False},
    ):
        token = forge({"alg": "ES256", "kid": ec.kid, **extension}, bank, ec)
        add(_token(f"crit {extension['crit']}", token, "HEADER_NOT_ALLOWED"))
    # nested JWT and JWE
    inner = sign(ec, bank)
    add(
        _token(
            "nested JWT (cty JWT)",
            forge({"alg": "ES256", "kid": ec.kid, "cty": "JWT"}, b64(inner.encode()), ec),
            "INVALID_FORMAT",
        )
    )
    add(
        _token(
            "nested JWT (no cty)",
            forge({"alg": "ES256", "kid": ec.kid}, b64(inner.encode()), ec),
            "INVALID_FORMAT",
        )
    )
    jwe_head = b64json({"alg": "RSA-OAEP", "enc": "A256GCM", "kid": rsa.kid})
    jwe = f"{jwe_head}.{b64(bytes(256))}.{b64(bytes(12))}.{b64(b'ciphertext')}.{b64(bytes(16))}"
    add(_token("JWE (five segments)", jwe, "INVALID_FORMAT"))
    add(
        _token(
            "JWE header in a JWS",
            forge({"alg": "ES256", "kid": ec.kid, "enc": "A256GCM"}, bank, ec),
            "INVALID_FORMAT",
        )
    )
    # oversized
    big = sign(ec, mandate_claims(BANK, pad="p" * 17_000))
    add(_token(f"token of {len(big)} bytes (cap 16 KiB)", big, "HTTP 413"))
    add(Case("request body of 200 KB", {"vc_jwt": "a" * 200_000}, _expect("HTTP 413")))
    # skewed times (leeway 30 s)
    for label, claims, status in (
        ("exp 31 s ago", mandate_claims(BANK, exp=now - 31), "EXPIRED"),
        ("exp 1 day ago", mandate_claims(BANK, exp=now - 86_400), "EXPIRED"),
        ("nbf in 10 min", mandate_claims(BANK, nbf=now + 600), "NOT_YET_VALID"),
        ("iat in 10 min", mandate_claims(BANK, iat=now + 600), "NOT_YET_VALID"),
        ("exp 2^60 (beyond I-JSON)", mandate_claims(BANK, exp=2**60), "INVALID_FORMAT"),
        ("exp as a string", mandate_claims(BANK, exp=str(now + 600)), "CLAIMS_INVALID"),
        ("no exp", {k: v for k, v in bank.items() if k != "exp"}, "MISSING_REQUIRED_FIELD"),
    ):
        add(_token(label, sign(ec, claims), status))
    add(
        _token(
            "exp 1 day ago (did:web)",
            sign(did_key, mandate_claims(did, exp=now - 86_400)),
            "EXPIRED",
        )
    )
    # mismatched key types and algorithms
    add(
        _token(
            "RSA kid, ES256 signed by EC key",
            forge({"alg": "ES256", "kid": rsa.kid}, bank, ec),
            "ALG_NOT_ALLOWED",
        )
    )
    add(
        _token(
            "EC kid, RS256 signed by RSA key",
            forge({"alg": "RS256", "kid": ec.kid}, bank, rsa),
            "ALG_NOT_ALLOWED",
        )
    )
    add(
        _token(
            "PS256 (issuer allows RS256)",
            sign(rsa.with_kid(rsa.kid, "PS256"), bank),
            "ALG_NOT_ALLOWED",
        )
    )
    add(
        _token(
            "ES384 on a P-256 issuer",
            forge({"alg": "ES384", "kid": ec.kid}, bank, ec_key("e", alg="ES384")),
            "ALG_NOT_ALLOWED",
        )
    )
    # ECDSA r = s = 0 and r = s = n
    order = P256_ORDER.to_bytes(32, "big")
    for label, signature in (("r = s = 0", bytes(64)), ("r = s = n", order + order)):
        add(
            _token(
                f"ECDSA {label}",
                forge({"alg": "ES256", "kid": ec.kid}, bank) + b64(signature),
                "SIG_INVALID",
            )
        )
        add(
            _token(
                f"ECDSA {label} (did:web)",
                forge({"alg": "ES256", "kid": did_key.kid}, on_did) + b64(signature),
                "SIG_INVALID",
            )
        )
    # truncated and padded base64, wrong segment counts
    head, body, sig = sign(ec, bank).split(".")
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
    ):
        # the api refuses a vc_jwt outside printable ASCII itself (422) before the verifier
        add(_token(label, token, "INVALID_FORMAT", "HTTP 422"))
    # forged content, strangers, untrusted issuers, oversized claims
    richer = mandate_claims(BANK)
    richer["vc"]["credentialSubject"]["amountLimit"] = "1000000.00"
    add(
        _token(
            "payload swapped under a valid signature",
            f"{head}.{b64json(richer)}.{sig}",
            "SIG_INVALID",
        )
    )
    add(_token("stranger's key, trusted kid", sign(stranger_ec, bank), "SIG_INVALID"))
    add(
        _token(
            "untrusted issuer", sign(ec, mandate_claims("did:web:evil.example")), "ISSUER_UNKNOWN"
        )
    )
    long_iss = "did:web:" + "a" * 600 + ".example"
    add(_token("untrusted iss of 600+ chars", sign(ec, mandate_claims(long_iss)), "ISSUER_UNKNOWN"))
    add(
        _token(
            "sub of 2,000 chars",
            sign(ec, mandate_claims(BANK, sub="did:example:" + "s" * 2000)),
            "CLAIMS_INVALID",
            "HTTP 422",
        )
    )
    dup = b64(b'{"alg":"ES256","kid":"ec-1","kid":"rsa-1"}')
    add(_token("duplicate header members", forge(dup, bank, ec), "INVALID_FORMAT"))
    # not a token at all (the api's own validation)
    add(Case("vc_jwt is a number", {"vc_jwt": 12345}, _expect("HTTP 422")))
    add(Case("vc_jwt is empty", {"vc_jwt": ""}, _expect("HTTP 422")))
    add(Case("vc_jwt is null", {"vc_jwt": None}, _expect("HTTP 422")))
    add(
        Case(
            "vc_jwt + status ACTIVE smuggled",
            {"vc_jwt": forge({"alg": "none"}, bank), "status": "ACTIVE"},
            _expect("HTTP 422"),
        )
    )
    return cases


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


def run(scale: Scale) -> Row:  # noqa: PLR0915 - one scenario, read top to bottom
    del scale  # every case runs in both modes: they take a second or two
    findings = Findings()
    recorder = Recorder()
    with tempfile.TemporaryDirectory(prefix="mv-reliability-tls-") as tmp:
        tls_dir = Path(tmp)
        tls = make_tls(tls_dir)
        did_server = DidServer(tls)
        ec, rsa, did_key = ec_key("ec-1"), rsa_key("rsa-1"), ec_key("key-1")
        did = did_server.did("issuer")
        document_path = did_server.publish(did, [did_key], "issuer")
        truststore = json.dumps(
            {
                "issuers": [
                    static_issuer(BANK, [ec, rsa], ["ES256", "RS256"]),
                    {"id": did, "algorithms": ["ES256"], "resolve": "did:web"},
                ]
            }
        )
        attack_dir = tls_dir / "attacker"
        attack_dir.mkdir()
        cases = build_cases(ec, rsa, did_key, did, recorder, did_server, attack_dir)
        try:
            with System(issuers=[], truststore=truststore, broker=False) as system:
                system.verifier.stop()  # type: ignore[union-attr]  # restarted with did:web settings
                system.start_verifier(
                    wait=False,
                    VERIFIER_SSRF_ALLOWLIST="127.0.0.1,localhost",
                    VERIFIER_DID_WEB_CA_FILE=str(tls.ca_file),
                )
                api = system.start_api(wait=False)
                system.ready()
                tenant = system.add_tenant(issuers=[BANK, did])
                outcomes: dict[str, int] = {}
                resets = 0
                with httpx.Client(base_url=api.url, headers=tenant.headers(), timeout=15) as c:
                    controls = [
                        c.post("/api/v1/mandates", json={"vc_jwt": sign(k, claims)})
                        for k, claims in (
                            (ec, mandate_claims(BANK)),
                            (did_key, mandate_claims(did)),
                        )
                    ]
                    for case in cases:
                        try:
                            response = c.post("/api/v1/mandates", json=case.body)
                        except httpx.TransportError:
                            # the server dropped the kept-alive connection (after a 500 it
                            # closes it): ask again on a fresh one to learn this case's answer
                            response = httpx.post(
                                f"{api.url}/api/v1/mandates",
                                json=case.body,
                                headers=tenant.headers(),
                                timeout=15,
                            )
                            resets += 1
                        outcome, problem = _judge(response, case)
                        outcomes[outcome] = outcomes.get(outcome, 0) + 1
                        if problem:
                            findings.check(False, problem)
                    active = c.get("/api/v1/mandates", params={"status": "ACTIVE", "limit": 200})
                    listed = c.get("/api/v1/mandates", params={"limit": 200})
                five_xx = server_errors(system.processes(), include_503=True)
        finally:
            recorder.close()
            did_server.close()
    control_status = [
        r.json().get("status") if r.status_code == 201 else r.status_code for r in controls
    ]
    findings.check(
        control_status == ["ACTIVE", "ACTIVE"],
        f"the valid controls were not ACTIVE: {control_status}",
    )
    active_ids = {m["id"] for m in active.json()["items"]}
    control_ids = {r.json()["id"] for r in controls if r.status_code == 201}
    findings.check(
        active_ids == control_ids, f"{len(active_ids - control_ids)} hostile mandates are ACTIVE"
    )
    stored = len(listed.json()["items"]) - len(controls)
    attacker_fetches = list(recorder.requests) + [
        p for p in did_server.requests if p != document_path
    ]
    findings.check(not attacker_fetches, f"outbound fetches of attacker URLs: {attacker_fetches}")
    for cause, n in five_xx.items():
        findings.check(False, f"server error: {cause} (x{n})")
    figures = {
        "hostile_tokens": len(cases),
        "outcomes": dict(sorted(outcomes.items())),
        "stored_rejected": stored,
        "active_hostile": len(active_ids - control_ids),
        "attacker_url_fetches": len(attacker_fetches),
        "did_document_fetches": did_server.requests.count(document_path),
        "controls": control_status,
        "kept_alive_connections_dropped": resets,
    }
    tried = (
        f"{len(cases)} hostile tokens via POST /api/v1/mandates against a static and a did:web "
        "issuer (alg none x6, empty/zero signatures, HS* with public keys, jku/x5u/jwk/x5c, "
        "kid injection, crit, nested, JWE, oversized, skewed times, key-type mismatch, "
        "r=s=0/n, bad base64)"
    )
    leaked = (
        f"{len(active_ids - control_ids)} ACTIVE, {stored} stored REJECTED, "
        f"{sum(n for o, n in outcomes.items() if o.startswith('HTTP'))} refused 413/422; "
        f"{len(attacker_fetches)} outbound fetches"
    )
    return findings.row(NAME, tried, leaked, figures)
