"""The one mint: an ES256 issuer of mandate JWTs (real keys, real signatures), its truststore
entry, and the demo issuer `make run` trusts (its key in the state directory, var/).

Tests and scenarios make throwaway `Issuer()`s; `make mint`/`make submit`, `make demo` and the
load mix use the demo issuer's key file (`Issuer.from_pem_file(demo_key_file(), ...)`).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mandate_vault_harness.jose import SigningKey, mandate_payload, sign
from mandate_vault_harness.services import REPO_ROOT

DEMO_ISSUER = "did:web:demo-bank.example"
DEMO_KID = "demo-key-1"


def demo_state_dir() -> Path:
    """`make run`'s state directory (MV_STATE_DIR, default var/)."""
    return Path(os.environ.get("MV_STATE_DIR", REPO_ROOT / "var"))


def demo_key_file() -> Path:
    return demo_state_dir() / "demo-issuer-key.pem"


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@dataclass
class Issuer:
    did: str = "did:web:bank.example.com"
    kid: str = "key-1"
    key: ec.EllipticCurvePrivateKey = field(default_factory=_new_key)

    @classmethod
    def from_pem_file(cls, path: Path, did: str, kid: str, *, create: bool = False) -> Issuer:
        """The issuer whose private key is in `path` (PKCS#8 PEM); `create` makes one first
        (readable by its owner only) when the file is missing."""
        if create and not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(cls(did, kid).pem())
            path.chmod(0o600)
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            msg = f"{path}: not an EC private key (ES256 needs P-256)"
            raise TypeError(msg)
        return cls(did, kid, key)

    def pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @property
    def signing_key(self) -> SigningKey:
        return SigningKey(self.kid, "ES256", self.key)

    def public_jwk(self) -> dict[str, Any]:
        return {**self.signing_key.public_jwk(), "alg": "ES256", "use": "sig"}

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
        """A signed mandate JWT; `overrides` replace top-level claims."""
        claims = mandate_payload(
            self.did,
            subject=subject,
            scope=scope,
            amount=amount,
            currency=currency,
            issued_at=time.time() if issued_at is None else issued_at,
            expires_in=expires_in,
        )
        return sign(self.signing_key, {**claims, **overrides})


def truststore_json(*issuers: Issuer, indent: int | None = None) -> str:
    return json.dumps({"issuers": [issuer.truststore_entry() for issuer in issuers]}, indent=indent)
