"""Standard Webhooks (standardwebhooks.com): secrets, signatures, payloads, secrets at rest.

- A secret is ``whsec_`` + base64 of 32 random bytes, unique per subscription.
- ``webhook-signature`` is a space-separated list of ``v1,<base64 HMAC-SHA256>`` over
  ``{webhook-id}.{webhook-timestamp}.{body}``, keyed with the base64-decoded part of the secret;
  during a rotation both the new and the previous secret sign.
- Secrets are stored encrypted (Fernet, key from settings) so the worker can sign while nothing
  can read them back through the API. The setting holds one key or several, comma-separated:
  the first encrypts, every one decrypts (MultiFernet), so keys rotate without downtime across
  replicas; `mandate-vault keys reencrypt` moves stored secrets to the first key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Final

import orjson
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

SECRET_PREFIX: Final = "whsec_"  # noqa: S105 - the prefix, not a secret
SECRET_BYTES: Final = 32
SIGNATURE_VERSION: Final = "v1"
DEV_ENCRYPTION_KEY: Final = "ZGV2ZWxvcG1lbnQtb25seS13ZWJob29rLWtleS0wMDA="


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def _key_bytes(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key_bytes(secret), signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def signature_header(secrets_: Iterable[str], message_id: str, timestamp: int, body: bytes) -> str:
    return " ".join(sign(secret, message_id, timestamp, body) for secret in secrets_)


def new_event_id() -> str:
    return f"msg_{secrets.token_hex(16)}"


def payload_bytes(
    event_type: str, occurred_at: datetime, data: dict[str, Any], sequence: int
) -> bytes:
    """The exact body that is signed and sent.

    Delivery order is not promised (deliveries run concurrently and retries come later), so the
    body carries what a receiver needs to order events itself: ``timestamp`` (when the change
    happened) and ``sequence`` (per subject, here per mandate: higher is newer).
    """
    return orjson.dumps(
        {
            "type": event_type,
            "timestamp": occurred_at.isoformat().replace("+00:00", "Z"),
            "sequence": sequence,
            "data": data,
        }
    )


def fernet_keys(keys: str) -> list[Fernet]:
    """Fernet keys from a comma-separated list (newest, the encrypting one, first)."""
    found = [Fernet(part.strip().encode()) for part in keys.split(",") if part.strip()]
    if not found:
        msg = "no encryption key given"
        raise ValueError(msg)
    return found


class SecretBox:
    """Encrypts webhook secrets at rest with the first key; opens them with any key."""

    def __init__(self, keys: str) -> None:
        fernets = fernet_keys(keys)
        self._newest = fernets[0]
        self._fernet = MultiFernet(fernets)

    def seal(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode()

    def open(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken as exc:
            msg = "webhook secret cannot be decrypted: wrong WEBHOOK_ENCRYPTION_KEY?"
            raise ValueError(msg) from exc

    def sealed_with_newest(self, ciphertext: str) -> bool:
        try:
            self._newest.decrypt(ciphertext.encode())
        except InvalidToken:
            return False
        return True

    def reseal(self, ciphertext: str) -> str:
        """The same secret encrypted with the newest key (ValueError if no key opens it)."""
        try:
            return self._fernet.rotate(ciphertext.encode()).decode()
        except InvalidToken as exc:
            msg = "webhook secret cannot be decrypted with any configured key"
            raise ValueError(msg) from exc
