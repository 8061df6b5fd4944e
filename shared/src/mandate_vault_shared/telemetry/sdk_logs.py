"""The SDK pipeline's log export: each structured line becomes an SDK log record.

The structlog chain has already redacted the event and skipped the export path's own loggers
(`logs`); the record carries the current span's context, the event name as body and event
name, and the other fields as attributes. The SDK's BatchLogRecordProcessor (``OTEL_BLRP_*``)
and OTLP exporter take it from there.
"""

from __future__ import annotations

import time

from opentelemetry import context as otel_context
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import Logger
from structlog.typing import EventDict, WrappedLogger

from mandate_vault_shared.telemetry.logs import SEVERITY, record_attributes


class SdkLogBridge:
    def __init__(self, logger: Logger) -> None:
        self._logger = logger

    def __call__(self, _: WrappedLogger, __: str, event: EventDict) -> EventDict:
        level = str(event.get("level", "info"))
        body = str(event.get("event", ""))
        self._logger.emit(
            timestamp=time.time_ns(),
            context=otel_context.get_current(),
            severity_number=SeverityNumber(SEVERITY.get(level, 9)),
            severity_text=level.upper(),
            body=body,
            attributes=record_attributes(event),
            event_name=body,
        )
        return event
