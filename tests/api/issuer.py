"""A test issuer: real keys, real signed mandate JWTs, and the truststore entry for them."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm


@dataclass
class Issuer:
    did: str = "did:web:bank.example.com"
    kid: str = "key-1"
    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )

    def public_jwk(self) -> dict[str, Any]:
        jwk = json.loads(ECAlgorithm.to_jwk(self.key.public_key()))
        return {**jwk, "kid": self.kid, "alg": "ES256", "use": "sig"}

    def truststore_entry(self) -> dict[str, Any]:
        return {"id": self.did, "algorithms": ["ES256"], "keys": [self.public_jwk()]}

    def mandate(
        self,
        *,
        subject: str = "did:example:customer-1",
        amount: str = "250.00",
        currency: str = "EUR",
        scope: str = "payments.recurring",
        expires_in: int = 3600,
        issued_at: float | None = None,
        **overrides: Any,
    ) -> str:
        now = int(issued_at if issued_at is not None else time.time())
        payload: dict[str, Any] = {
            "iss": self.did,
            "sub": subject,
            "iat": now,
            "nbf": now,
            "exp": now + expires_in,
            "jti": f"urn:uuid:{time.monotonic_ns()}",
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
            **overrides,
        }
        return jwt.encode(payload, self.key, algorithm="ES256", headers={"kid": self.kid})


def truststore_json(*issuers: Issuer) -> str:
    return json.dumps({"issuers": [issuer.truststore_entry() for issuer in issuers]})
