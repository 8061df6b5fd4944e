"""The verifier's own signals: ``jwt_verifications_total{status, issuer}`` and one
``jwt_verification`` log line per verification (never the token itself)."""

from __future__ import annotations

from typing import Final

from opentelemetry import trace

from mandate_vault_shared.telemetry import get_logger, names
from mandate_vault_shared.telemetry.instruments import Metrics
from mandate_vault_verifier.verifier import VerificationResult

# Label keys and event names of this service (candidates for telemetry.names).
LABEL_STATUS: Final = "status"
LABEL_ISSUER: Final = "issuer"
EVENT_JWT_VERIFICATION: Final = "jwt_verification"
ATTR_STATUS: Final = "mandate_vault.verification.status"
ATTR_ISSUER: Final = "mandate_vault.verification.issuer"

log = get_logger(__name__)


class VerificationRecorder:
    def __init__(self, metrics: Metrics) -> None:
        self._counter = metrics.counter(
            names.JWT_VERIFICATIONS_TOTAL,
            "JWT verifications by status and issuer",
            (LABEL_STATUS, LABEL_ISSUER),
        )

    def record(self, result: VerificationResult, seconds: float) -> None:
        status, issuer = result.status.value, result.issuer_label
        self._counter.add((status, issuer))
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attribute(ATTR_STATUS, status)
            span.set_attribute(ATTR_ISSUER, issuer)
        log.info(
            EVENT_JWT_VERIFICATION,
            status=status,
            issuer=issuer,
            key_id=result.key_id,
            reason=result.reason,
            duration_ms=round(seconds * 1000, 3),
        )
