"""The verifier's own signals: ``jwt_verifications_total{status, issuer}`` and one
``jwt_verification`` log line per verification (never the token itself)."""

from __future__ import annotations

from typing import Final

from opentelemetry import trace
from opentelemetry.metrics import Meter

from mandate_vault_shared.telemetry import get_logger, names
from mandate_vault_verifier.verifier import VerificationResult

# Label keys and event names of this service (candidates for telemetry.names).
LABEL_STATUS: Final = "status"
LABEL_ISSUER: Final = "issuer"
EVENT_JWT_VERIFICATION: Final = "jwt_verification"
ATTR_STATUS: Final = "mandate_vault.verification.status"
ATTR_ISSUER: Final = "mandate_vault.verification.issuer"

log = get_logger(__name__)


class VerificationRecorder:
    def __init__(self, meter: Meter) -> None:
        self._counter = meter.create_counter(
            names.JWT_VERIFICATIONS_TOTAL,
            description="JWT verifications by status and issuer",
        )
        self._attrs: dict[tuple[str, str], dict[str, str]] = {}

    def record(self, result: VerificationResult, seconds: float) -> None:
        status, issuer = result.status.value, result.issuer_label
        attrs = self._attrs.get((status, issuer))
        if attrs is None:
            attrs = self._attrs[(status, issuer)] = {LABEL_STATUS: status, LABEL_ISSUER: issuer}
        self._counter.add(1, attrs)
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
