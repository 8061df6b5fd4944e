"""Structured logging: one line per event, JSON or text, sampled, redacted, trace-correlated.

Usage everywhere: ``log = get_logger(__name__)`` then ``log.info("event_name", key=value)``.

Each line carries ``event``, ``level``, ``timestamp`` (ISO-8601 UTC ending in ``Z``), ``logger``
and ``service``, plus ``trace_id``/``span_id`` when a span is current. INFO and DEBUG lines are
kept at ``sample_rate``; WARNING and above always. Records from the standard library (uvicorn,
aiokafka, the OpenTelemetry SDK) go through the same chain, so every line has one shape. A CR or
LF inside a value can never start a second line: JSON escapes it and the text renderer quotes it.

Lines also go to the OTLP exporters (when configured), except the export path's own: records of
the HTTP/gRPC clients and the OpenTelemetry SDK are never shipped, at any level, or each export
would log, and each log line be exported, in a loop.
"""

from __future__ import annotations

import logging
import random
import sys
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, Final, TextIO

import orjson
import structlog
from opentelemetry import trace
from structlog.typing import EventDict, Processor, WrappedLogger

from mandate_vault_shared.settings import LogFormat, LogLevel
from mandate_vault_shared.telemetry.redact import REDACTED, is_sensitive_key, redact_text

_SAMPLED_METHODS: Final = frozenset({"debug", "info"})
# Libraries whose INFO chatter would drown the service's own events.
_QUIET_LIBRARIES: Final = (
    "aiokafka",
    "aiosqlite",
    "asyncio",
    "alembic",
    "httpx",
    "httpcore",
    "opentelemetry",
    "sqlalchemy",
    "urllib3",
    "requests",
    "grpc",
)
# Loggers of the export path (the exporters' HTTP and gRPC clients, the SDK): never exported.
EXPORT_PATH_LOGGERS: Final = (
    "urllib3",
    "requests",
    "charset_normalizer",
    "opentelemetry",
    "grpc",
    "httpx",
    "httpcore",
    "h2",
    "hpack",
)
_EXPORT_PATH: Final = tuple(f"{name}." for name in EXPORT_PATH_LOGGERS)
SEVERITY: Final = {"debug": 5, "info": 9, "warning": 13, "error": 17, "critical": 21}
# Carried by a log record itself (body, severity, time, trace fields) or by the resource.
_ENVELOPE_KEYS: Final = frozenset({"event", "level", "timestamp", "trace_id", "span_id", "service"})
_PRIMITIVES: Final = (str, bool, int, float)
_TEXT_KEYS_FIRST: Final = ("timestamp", "level", "logger", "event")
_SAFE_TYPES: Final = frozenset({int, float, bool})  # cannot carry a secret
_OWN_KEYS: Final = frozenset({"event", "logger_name"})  # event names are code constants


@dataclass(frozen=True, slots=True)
class LogConfig:
    service: str
    level: LogLevel = LogLevel.INFO
    format: LogFormat = LogFormat.JSON
    sample_rate: float = 1.0


def get_logger(name: str) -> Any:
    """The project's logger: ``log.info("event_name", key=value)``."""
    # structlog reserves the keyword `logger`; the name is renamed to `logger` when rendered.
    return structlog.get_logger(logger_name=name)


def _sampler(rate: float) -> Processor:
    def sample(_: WrappedLogger, method: str, event: EventDict) -> EventDict:
        if method in _SAMPLED_METHODS and random.random() >= rate:  # noqa: S311 - not crypto
            raise structlog.DropEvent
        return event

    return sample


def _redact_fields(event: EventDict) -> None:
    for key, value in event.items():
        if value is None or type(value) in _SAFE_TYPES or key in _OWN_KEYS:
            continue
        if is_sensitive_key(key):
            event[key] = REDACTED
        elif type(value) is str:
            event[key] = redact_text(value)
        elif isinstance(value, dict | list | tuple):
            event[key] = redact_text(str(value))


_ISO_SECOND: Final = "%Y-%m-%dT%H:%M:%S"
_SECOND_PREFIXES: dict[int, str] = {}  # the current second, formatted


def _utc_timestamp() -> str:
    """Now, ISO-8601 UTC with microseconds and a ``Z``; the date and time of day are formatted
    once per second (datetime.now().isoformat() cost ~2 us a line)."""
    seconds, micros = divmod(time.time_ns() // 1000, 1_000_000)
    prefix = _SECOND_PREFIXES.get(seconds)
    if prefix is None:
        _SECOND_PREFIXES.clear()
        prefix = _SECOND_PREFIXES[seconds] = time.strftime(
            "%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)
        )
    return f"{prefix}.{micros:06d}Z"


def _envelope(service: str) -> Processor:
    """Redaction, then the envelope fields: one processor, because each call costs."""

    def process(logger: WrappedLogger, method: str, event: EventDict) -> EventDict:
        if event.get("exc_info"):
            event = structlog.processors.format_exc_info(logger, method, event)
        _redact_fields(event)
        event["level"] = "warning" if method == "warn" else method
        event["logger"] = event.pop("logger_name", None) or event.get("logger") or "root"
        event["service"] = service
        event["timestamp"] = _utc_timestamp()
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            event["trace_id"] = format(context.trace_id, "032x")
            event["span_id"] = format(context.span_id, "016x")
        return event

    return process


def _orjson_default(value: Any) -> str:
    return str(value)


def _render_json_bytes(_: WrappedLogger, __: str, event: EventDict) -> bytes:
    return orjson.dumps(event, default=_orjson_default)


def _render_json_str(_: WrappedLogger, __: str, event: EventDict) -> str:
    return orjson.dumps(event, default=_orjson_default).decode()


def _text_value(value: Any) -> str:
    text = value if isinstance(value, str) else str(value)
    if text and text.isprintable() and " " not in text and '"' not in text:
        return text
    return orjson.dumps(text).decode()  # quoted, with CR/LF and controls escaped


def _render_text(_: WrappedLogger, __: str, event: EventDict) -> str:
    head = [_text_value(event.pop(key, "")) for key in _TEXT_KEYS_FIRST]
    tail = [f"{key}={_text_value(value)}" for key, value in event.items()]
    return " ".join(head + tail)


class _SamplingFilter(logging.Filter):
    """The sampling rule for standard-library records (structlog's DropEvent is not allowed
    inside a logging.Formatter)."""

    def __init__(self, rate: float) -> None:
        super().__init__()
        self._rate = rate

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or random.random() < self._rate  # noqa: S311


def from_export_path(logger: str) -> bool:
    return logger in EXPORT_PATH_LOGGERS or logger.startswith(_EXPORT_PATH)


def record_attributes(event: EventDict) -> dict[str, Any]:
    """A structlog event's fields as OTLP log attributes (primitives, the rest as text)."""
    return {
        key: value if isinstance(value, _PRIMITIVES) else str(value)
        for key, value in event.items()
        if key not in _ENVELOPE_KEYS and value is not None
    }


def _shipping(exporters: list[Processor]) -> Processor:
    """Hands each line to the exporters, unless it comes from the export path itself."""

    def ship(logger: WrappedLogger, method: str, event: EventDict) -> EventDict:
        if not from_export_path(str(event.get("logger", ""))):
            for exporter in exporters:
                exporter(logger, method, event)
        return event

    return ship


def _chain(config: LogConfig, extra: list[Processor]) -> list[Processor]:
    chain = [structlog.contextvars.merge_contextvars, _envelope(config.service)]
    return [*chain, _shipping(extra)] if extra else chain


def configure_logging(
    config: LogConfig,
    *,
    stream: TextIO | None = None,
    exporters: list[Processor] | None = None,
) -> None:
    """Configure structlog and the standard library once per process."""
    out = stream or sys.stdout
    extra = exporters or []
    chain = _chain(config, extra)
    level = logging.getLevelNamesMapping()[config.level.value]
    sampling = [_sampler(config.sample_rate)] if config.sample_rate < 1.0 else []
    if config.format is LogFormat.JSON and hasattr(out, "buffer"):
        renderer: Processor = _render_json_bytes
        factory: Callable[..., WrappedLogger] = structlog.BytesLoggerFactory(out.buffer)
    else:
        renderer = _render_json_str if config.format is LogFormat.JSON else _render_text
        factory = structlog.WriteLoggerFactory(out)
    structlog.configure(
        processors=[*sampling, *chain, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )
    _configure_stdlib(config, chain, level, out)


def _configure_stdlib(config: LogConfig, chain: list[Processor], level: int, out: TextIO) -> None:
    renderer = _render_text if config.format is LogFormat.TEXT else _render_json_str
    handler = logging.StreamHandler(out)
    if config.sample_rate < 1.0:
        handler.addFilter(_SamplingFilter(config.sample_rate))
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[_stdlib_fields, *chain],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            use_get_message=True,
        )
    )
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    for name in _QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True  # http_request is our access log


def _stdlib_fields(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    record: logging.LogRecord | None = event.get("_record")
    if record is not None:
        event["logger"] = record.name
    return event


def bind_context(**values: Any) -> None:
    """Attach values (request_id, tenant_id, ...) to every log line of the current task."""
    structlog.contextvars.bind_contextvars(**values)


def clear_context() -> None:
    structlog.contextvars.clear_contextvars()


def log_event_fields(event: MutableMapping[str, Any]) -> dict[str, Any]:
    """Fields of an event dict other than the envelope keys, for exporters."""
    return {k: v for k, v in event.items() if k not in {"event", "level", "timestamp"}}
