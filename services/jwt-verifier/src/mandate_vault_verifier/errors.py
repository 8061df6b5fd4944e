"""The one internal exception of the verification pipeline: a final outcome other than VALID."""

from __future__ import annotations

from mandate_vault_verifier.statuses import VerificationStatus


class Rejection(Exception):
    """Stops verification with ``status``; ``reason`` is shown to the caller (no secrets)."""

    def __init__(self, status: VerificationStatus, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
