"""Real keys, real tokens, a real HTTPS server for DID documents: the kit of the verifier's
tests and the hostile-JWT scenarios. `mandate_payload` and `sign` are the one way the harness
builds and signs a mandate (`issuer.Issuer` uses them too); `forge` builds what no honest
library would."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

if TYPE_CHECKING:
    from mandate_vault_verifier.verifier import Verifier

ALICE = "did:example:alice"


@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: str
    private: Any

    def public_jwk(self, **extra: Any) -> dict[str, Any]:
        algorithm = jwt.get_algorithm_by_name(self.alg)
        jwk: dict[str, Any] = algorithm.to_jwk(self.private.public_key(), as_dict=True)
        return {**jwk, "kid": self.kid, **extra}

    def public_pem(self) -> bytes:
        return bytes(
            self.private.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def with_kid(self, kid: str, alg: str | None = None) -> SigningKey:
        return SigningKey(kid=kid, alg=alg or self.alg, private=self.private)


@dataclass(frozen=True)
class Keys:
    """The verifier suite's keys: one per algorithm, and strangers' keys under the same kids."""

    rsa: SigningKey
    ps: SigningKey  # the RSA key, signing PS256
    ec: SigningKey
    ec384: SigningKey
    ed: SigningKey
    stranger_rsa: SigningKey  # same kid as `rsa`, never trusted
    stranger_ec: SigningKey
    stranger_ed: SigningKey

    def by_alg(self, alg: str) -> SigningKey:
        return {"RS256": self.rsa, "PS256": self.ps, "ES256": self.ec, "ES384": self.ec384,
                "EdDSA": self.ed}[alg]  # fmt: skip

    def stranger(self, alg: str) -> SigningKey:
        kid = self.by_alg(alg).kid
        private = {"RS256": self.stranger_rsa, "PS256": self.stranger_rsa,
                   "ES256": self.stranger_ec, "EdDSA": self.stranger_ed}[alg].private  # fmt: skip
        return SigningKey(kid, alg, private)


# Builds an in-process verifier (the verifier suite's `make_verifier` fixture).
VerifierFactory = Callable[..., "Verifier"]


def rsa_key(kid: str, alg: str = "RS256") -> SigningKey:
    return SigningKey(kid, alg, rsa.generate_private_key(public_exponent=65537, key_size=2048))


def ec_key(kid: str, curve: ec.EllipticCurve | None = None, alg: str = "ES256") -> SigningKey:
    return SigningKey(kid, alg, ec.generate_private_key(curve or ec.SECP256R1()))


def ed_key(kid: str) -> SigningKey:
    return SigningKey(kid, "EdDSA", ed25519.Ed25519PrivateKey.generate())


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(value: Any) -> str:
    return b64(json.dumps(value, separators=(",", ":")).encode())


def mandate_payload(
    iss: str,
    *,
    subject: str,
    scope: str,
    amount: str,
    currency: str,
    issued_at: float,
    expires_in: int,
    jti: str | None = None,
    not_before: bool = True,
) -> dict[str, Any]:
    """The claims of a PaymentMandate credential as issuers sign them."""
    now = int(issued_at)
    claims: dict[str, Any] = {
        "iss": iss,
        "sub": subject,
        "iat": now,
        "exp": now + expires_in,
        "jti": jti or f"urn:uuid:{uuid.uuid4()}",
        "vc": {
            "@context": ["https://www.w3.org/2018/credentials/v1"],
            "type": ["VerifiableCredential", "PaymentMandate"],
            "credentialSubject": {
                "id": subject,
                "scope": scope,
                "amountLimit": amount,
                "currency": currency,
            },
        },
    }
    if not_before:
        claims["nbf"] = now
    return claims


def mandate_claims(iss: str, *, sub: str = ALICE, **overrides: Any) -> dict[str, Any]:
    """The verifier suite's mandate: issued 10 s ago, valid for an hour, jti "mandate-1"."""
    claims = mandate_payload(
        iss, subject=sub, scope="payments:recurring", amount="100.00", currency="EUR",
        issued_at=time.time() - 10, expires_in=3610, jti="mandate-1", not_before=False,
    )  # fmt: skip
    claims.update(overrides)
    return claims


def sign(key: SigningKey, claims: dict[str, Any], **headers: Any) -> str:
    """A token exactly as an issuer would produce it (PyJWT, kid header)."""
    return jwt.encode(claims, key.private, algorithm=key.alg, headers={"kid": key.kid, **headers})


def forge(
    header: dict[str, Any] | str,
    claims: dict[str, Any] | str,
    key: SigningKey | None = None,
    *,
    alg: str | None = None,
) -> str:
    """A hand-built compact JWS: any header, signed with ``key`` under ``alg`` (or unsigned)."""
    head = header if isinstance(header, str) else b64json(header)
    body = claims if isinstance(claims, str) else b64json(claims)
    signing_input = f"{head}.{body}".encode()
    if key is None:
        return f"{head}.{body}."
    signature = jwt.get_algorithm_by_name(alg or key.alg).sign(signing_input, key.private)
    return f"{head}.{body}.{b64(signature)}"


def segments(token: str) -> list[str]:
    return token.split(".")


def replace_segment(token: str, index: int, value: str) -> str:
    parts = token.split(".")
    parts[index] = value
    return ".".join(parts)


# --- TLS: a throwaway CA and a localhost certificate ---------------------------------------


@dataclass(frozen=True)
class TlsFiles:
    ca_file: Path
    cert_file: Path
    key_file: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_tls(directory: Path) -> TlsFiles:
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("mandate-vault test CA"))
        .issuer_name(_name("mandate-vault test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca_cert.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(directory / "ca.pem", directory / "localhost.pem", directory / "key.pem")
    files.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.cert_file.write_bytes(leaf_cert.public_bytes(serialization.Encoding.PEM))
    files.key_file.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


# --- an HTTPS server for DID documents --------------------------------------------------


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


class DidServer:
    """HTTPS on 127.0.0.1 (certificate for ``localhost``); records every request it answers."""

    def __init__(self, tls: TlsFiles) -> None:
        self.replies: dict[str, Reply] = {}
        self.requests: list[str] = []
        self.arrivals: list[float] = []  # time.monotonic() of each request, in order
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with server._lock:
                    server.requests.append(self.path)
                    server.arrivals.append(time.monotonic())
                    reply = server.replies.get(self.path, Reply(404, b'{"error":"not found"}'))
                if reply.delay:
                    time.sleep(reply.delay)
                self.send_response(reply.status)
                headers = {"Content-Type": "application/did+json", **reply.headers}
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            def log_message(self, *_: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(tls.cert_file, tls.key_file)
        self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def did(self, *path: str) -> str:
        return ":".join([f"did:web:localhost%3A{self.port}", *path])

    def document_path(self, *path: str) -> str:
        return "/" + "/".join([*path, "did.json"]) if path else "/.well-known/did.json"

    def publish(self, did: str, keys: list[SigningKey], *path: str, **reply: Any) -> str:
        """Serve a DID document for ``did`` at its did:web path; returns that path."""
        document = did_document(did, keys)
        location = self.document_path(*path)
        self.replies[location] = Reply(body=json.dumps(document).encode(), **reply)
        return location

    def reset(self) -> None:
        with self._lock:
            self.replies.clear()
            self.requests.clear()
            self.arrivals.clear()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def did_document(did: str, keys: list[SigningKey]) -> dict[str, Any]:
    methods = []
    for key in keys:
        jwk = key.public_jwk()
        jwk.pop("kid")
        methods.append(
            {"id": f"{did}#{key.kid}", "type": "JsonWebKey2020", "controller": did,
             "publicKeyJwk": jwk}
        )  # fmt: skip
    return {
        "@context": ["https://www.w3.org/ns/did/v1"],
        "id": did,
        "verificationMethod": methods,
        "assertionMethod": [m["id"] for m in methods],
    }


def static_issuer(
    issuer_id: str, keys: list[SigningKey], algorithms: list[str] | None = None
) -> dict[str, Any]:
    return {
        "id": issuer_id,
        "algorithms": algorithms or sorted({key.alg for key in keys}),
        "keys": [key.public_jwk() for key in keys],
    }


def did_web_issuer(did: str, algorithms: list[str]) -> dict[str, Any]:
    return {"id": did, "algorithms": algorithms, "resolve": "did:web"}
