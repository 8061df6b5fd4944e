"""Telemetry for a Mandate Vault process: traces, metrics, logs and Sentry.

`create_telemetry` builds one `Telemetry` per process (see `configure`), which is passed
explicitly to the app factory and on to whatever records; service code records metrics through
``telemetry.metrics`` only (`instruments`), whichever pipeline runs.
"""

from mandate_vault_shared.telemetry.configure import TelemetryOptions, create_telemetry
from mandate_vault_shared.telemetry.logs import get_logger
from mandate_vault_shared.telemetry.process import Telemetry

__all__ = ["Telemetry", "TelemetryOptions", "create_telemetry", "get_logger"]
