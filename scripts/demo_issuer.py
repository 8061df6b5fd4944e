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
import sys

import httpx

from mandate_vault_harness.issuer import (
    DEMO_ISSUER,
    DEMO_KID,
    Issuer,
    demo_key_file,
    demo_state_dir,
    truststore_json,
)


def demo_issuer() -> Issuer:
    """The demo issuer, its key made on first use."""
    return Issuer.from_pem_file(demo_key_file(), DEMO_ISSUER, DEMO_KID, create=True)


def init() -> None:
    truststore = demo_state_dir() / "truststore.json"
    truststore.write_text(truststore_json(demo_issuer(), indent=2) + "\n")
    print(f"issuer {DEMO_ISSUER}: truststore written to {truststore}")


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
        return
    token = demo_issuer().mandate(
        subject=args.subject,
        amount=args.amount,
        currency=args.currency,
        scope=args.scope,
        expires_in=args.expires_in,
    )
    if args.command == "mint":
        print(token)
    else:
        submit(args.api, args.email, args.password, token)


if __name__ == "__main__":
    main()
