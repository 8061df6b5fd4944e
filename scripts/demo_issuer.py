"""A demo issuer for `make run`: a local signing key, the verifier's truststore, signed mandates.

    python scripts/demo_issuer.py init      # key + var/truststore.json (make run does this)
    python scripts/demo_issuer.py mint [--subject S] [--amount A] [--currency C] [--scope S]
    python scripts/demo_issuer.py submit --email E --password P [--api URL]

`mint` prints a mandate JWT signed by `did:web:demo-bank.example`; `submit` logs in, mints one
and POSTs it to the api, printing the stored mandate. The key lives in var/ (never committed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

ROOT = Path(__file__).resolve().parent.parent
STATE = Path(os.environ.get("MV_STATE_DIR", ROOT / "var"))  # make run's state directory
KEY_FILE = STATE / "demo-issuer-key.pem"
TRUSTSTORE = STATE / "truststore.json"
ISSUER = "did:web:demo-bank.example"
KID = "demo-key-1"


def _key() -> ec.EllipticCurvePrivateKey:
    if not KEY_FILE.exists():
        STATE.mkdir(exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        KEY_FILE.write_bytes(pem)
        KEY_FILE.chmod(0o600)
    loaded = serialization.load_pem_private_key(KEY_FILE.read_bytes(), password=None)
    assert isinstance(loaded, ec.EllipticCurvePrivateKey)
    return loaded


def init() -> None:
    public = json.loads(ECAlgorithm.to_jwk(_key().public_key()))
    entry = {
        "id": ISSUER,
        "algorithms": ["ES256"],
        "keys": [{**public, "kid": KID, "alg": "ES256", "use": "sig"}],
    }
    TRUSTSTORE.write_text(json.dumps({"issuers": [entry]}, indent=2) + "\n")


def mint(subject: str, amount: str, currency: str, scope: str, expires_in: int) -> str:
    now = int(time.time())
    payload = {
        "iss": ISSUER,
        "sub": subject,
        "iat": now,
        "nbf": now,
        "exp": now + expires_in,
        "jti": f"urn:uuid:{uuid.uuid4()}",
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
    return jwt.encode(payload, _key(), algorithm="ES256", headers={"kid": KID})


def submit(api: str, email: str, password: str, token: str) -> None:
    with httpx.Client(base_url=api, timeout=10) as client:
        login = client.post("/api/v1/auth/login", json={"email": email, "password": password})
        if login.status_code != 200:
            sys.exit(f"login failed: {login.status_code} {login.text}")
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        created = client.post("/api/v1/mandates", json={"vc_jwt": token}, headers=headers)
        print(json.dumps(created.json(), indent=2))
        if created.status_code != 201:
            sys.exit(f"the mandate was not created: {created.status_code}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("init")
    for name in ("mint", "submit"):
        command = commands.add_parser(name)
        command.add_argument("--subject", default="did:example:customer-123")
        command.add_argument("--amount", default="100.00")
        command.add_argument("--currency", default="EUR")
        command.add_argument("--scope", default="payments.recurring")
        command.add_argument("--expires-in", type=int, default=30 * 86_400)
        if name == "submit":
            command.add_argument("--api", default="http://127.0.0.1:8000")
            command.add_argument("--email", required=True)
            command.add_argument("--password", required=True)
    args = parser.parse_args()
    if args.command == "init":
        init()
        print(f"issuer {ISSUER}: truststore written to {TRUSTSTORE}")
        return
    token = mint(args.subject, args.amount, args.currency, args.scope, args.expires_in)
    if args.command == "mint":
        print(token)
    else:
        submit(args.api, args.email, args.password, token)


if __name__ == "__main__":
    main()
