"""Settings every service shares: environment, logging, sampling and Sentry.

The names of the shared variables (`ENVIRONMENT`, `LOG_LEVEL`, `LOG_FORMAT`, `SENTRY_DSN`, ...)
are part of the operators' contract, so they carry no service prefix. Each service subclasses
`ServiceSettings` with its own `env_prefix` for everything else. `OTEL_*` variables belong to
the OpenTelemetry SDK; the only one read here is the sampler ratio, so that one knob keeps its
standard name while its default follows the environment.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from enum import StrEnum
from typing import Annotated, Literal, Self, TypeVar

from pydantic import AliasChoices, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Ratio = Annotated[float, Field(ge=0.0, le=1.0)]

# Values that look like a secret but are obviously not one: refused outside development.
_MIN_SECRET_LENGTH = 16
_PLACEHOLDER_SECRETS = frozenset({"", "changeme", "change-me", "secret", "password", "dev", "test"})


class Environment(StrEnum):
    DEVELOPMENT = "development"
    STAGING = "staging"
    PRODUCTION = "production"


class LogLevel(StrEnum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


class LogFormat(StrEnum):
    JSON = "json"
    TEXT = "text"


# environment -> (log level, log format, INFO/DEBUG log sample rate, trace ratio, Sentry traces)
_ENVIRONMENT_DEFAULTS: dict[Environment, tuple[LogLevel, LogFormat, float, float, float]] = {
    Environment.DEVELOPMENT: (LogLevel.DEBUG, LogFormat.TEXT, 1.0, 1.0, 1.0),
    Environment.STAGING: (LogLevel.INFO, LogFormat.JSON, 1.0, 1.0, 1.0),
    Environment.PRODUCTION: (LogLevel.WARNING, LogFormat.JSON, 0.1, 0.1, 0.1),
}


def _alias(*names: str) -> AliasChoices:
    """Accept the field name (for code and tests) and the contract's variable name."""
    return AliasChoices(*names)


class ServiceSettings(BaseSettings):
    """Base class of every service's settings; subclasses set `env_prefix`."""

    model_config = SettingsConfigDict(
        extra="ignore", populate_by_name=True, frozen=True, validate_default=True
    )

    environment: Environment = Field(
        Environment.DEVELOPMENT, validation_alias=_alias("environment", "ENVIRONMENT")
    )
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    log_level: LogLevel | None = Field(None, validation_alias=_alias("log_level", "LOG_LEVEL"))
    log_format: LogFormat | None = Field(None, validation_alias=_alias("log_format", "LOG_FORMAT"))
    log_sample_rate: Ratio | None = Field(
        None, validation_alias=_alias("log_sample_rate", "LOG_SAMPLE_RATE")
    )
    trace_sample_rate: Ratio | None = Field(
        None, validation_alias=_alias("trace_sample_rate", "OTEL_TRACES_SAMPLER_ARG")
    )
    sentry_dsn: SecretStr | None = Field(None, validation_alias=_alias("sentry_dsn", "SENTRY_DSN"))
    sentry_traces_sample_rate: Ratio | None = Field(
        None, validation_alias=_alias("sentry_traces_sample_rate", "SENTRY_TRACES_SAMPLE_RATE")
    )
    telemetry_enabled: bool = Field(
        True, validation_alias=_alias("telemetry_enabled", "TELEMETRY_ENABLED")
    )
    telemetry_http_middleware: Literal["lean", "contrib"] = Field(
        "lean",
        validation_alias=_alias("telemetry_http_middleware", "TELEMETRY_HTTP_MIDDLEWARE"),
    )

    @model_validator(mode="after")
    def _fill_environment_defaults(self) -> Self:
        level, fmt, log_rate, trace_rate, sentry_rate = _ENVIRONMENT_DEFAULTS[self.environment]
        defaults = {
            "log_level": level,
            "log_format": fmt,
            "log_sample_rate": log_rate,
            "trace_sample_rate": trace_rate,
            "sentry_traces_sample_rate": sentry_rate,
        }
        for name, value in defaults.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        return self

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> Self:
        if self.environment is Environment.DEVELOPMENT:
            return self
        for name in self.required_secrets():
            value = getattr(self, name)
            raw = value.get_secret_value() if isinstance(value, SecretStr) else value
            text = "" if raw is None else str(raw).strip()
            if text.lower() in _PLACEHOLDER_SECRETS or len(text) < _MIN_SECRET_LENGTH:
                msg = (
                    f"{name} must be set to a real secret (at least {_MIN_SECRET_LENGTH} "
                    f"characters) when ENVIRONMENT={self.environment.value}"
                )
                raise ValueError(msg)
        return self

    def required_secrets(self) -> Iterable[str]:
        """Field names that must hold a real secret outside development."""
        return ()

    @property
    def effective_log_level(self) -> LogLevel:
        assert self.log_level is not None  # filled by the validator
        return self.log_level

    @property
    def effective_log_format(self) -> LogFormat:
        assert self.log_format is not None
        return self.log_format


_S = TypeVar("_S", bound=ServiceSettings)


def load_settings(cls: type[_S]) -> _S:
    """Build settings from the environment or exit with a message an operator can act on."""
    try:
        return cls()
    except ValidationError as exc:
        lines = [f"invalid settings for {cls.__name__}:"]
        for error in exc.errors():
            location = ".".join(str(part) for part in error["loc"]) or "settings"
            lines.append(f"  {location}: {error['msg']}")
        sys.stderr.write("\n".join(lines) + "\n")
        raise SystemExit(2) from None
