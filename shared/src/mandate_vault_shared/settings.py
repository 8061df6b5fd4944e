"""Settings every service shares: environment, logging, sampling and Sentry.

The names of the shared variables (`ENVIRONMENT`, `LOG_LEVEL`, `LOG_FORMAT`, `SENTRY_DSN`, ...)
are part of the operators' contract, so they carry no service prefix. Each service subclasses
`ServiceSettings` with its own `env_prefix` for everything else. `OTEL_*` variables belong to
the OpenTelemetry SDK; the ones read here are checked on load, and where a project default
overlaps (the sampler ratio follows `ENVIRONMENT`) the standard variable, when set, wins.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Sequence
from enum import StrEnum
from typing import Annotated, Any, Final, Literal, Self, TypeVar

from pydantic import AliasChoices, BaseModel, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from mandate_vault_shared.setting_types import OtlpEndpoint, OtlpProtocol, SentryDsn

Ratio = Annotated[float, Field(ge=0.0, le=1.0)]
TracesSampler = Literal[
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
]
ExemplarFilter = Literal["trace_based", "always_on", "always_off"]

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


def _otlp_variable(suffix: str) -> Any:
    """A field read from the standard ``OTEL_EXPORTER_OTLP_<suffix>`` variable, unset by default."""
    return Field(
        None, validation_alias=_alias(f"otlp_{suffix.lower()}", f"OTEL_EXPORTER_OTLP_{suffix}")
    )


class ServiceSettings(BaseSettings):
    """Base class of every service's settings; subclasses set `env_prefix`."""

    model_config = SettingsConfigDict(
        extra="ignore",
        populate_by_name=True,
        frozen=True,
        validate_default=True,
        hide_input_in_errors=True,  # a value that fails may be a secret
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
    sentry_dsn: SentryDsn | None = Field(None, validation_alias=_alias("sentry_dsn", "SENTRY_DSN"))
    sentry_traces_sample_rate: Ratio | None = Field(
        None, validation_alias=_alias("sentry_traces_sample_rate", "SENTRY_TRACES_SAMPLE_RATE")
    )
    telemetry_enabled: bool = Field(
        True, validation_alias=_alias("telemetry_enabled", "TELEMETRY_ENABLED")
    )
    # fast: our encoders, log shipper, dict-backed instruments and request middleware; sdk: the
    # OpenTelemetry packages (FastAPI/asyncpg instrumentation, SDK instruments and exporters).
    telemetry_pipeline: Literal["fast", "sdk"] = Field(
        "fast", validation_alias=_alias("telemetry_pipeline", "TELEMETRY_PIPELINE")
    )
    telemetry_semconv_metrics: bool = Field(
        True, validation_alias=_alias("telemetry_semconv_metrics", "TELEMETRY_SEMCONV_METRICS")
    )
    otel_sdk_disabled: bool = Field(
        False, validation_alias=_alias("otel_sdk_disabled", "OTEL_SDK_DISABLED")
    )
    otel_traces_sampler: TracesSampler | None = Field(
        None, validation_alias=_alias("otel_traces_sampler", "OTEL_TRACES_SAMPLER")
    )
    otel_metrics_exemplar_filter: ExemplarFilter | None = Field(
        None,
        validation_alias=_alias("otel_metrics_exemplar_filter", "OTEL_METRICS_EXEMPLAR_FILTER"),
    )

    # The OpenTelemetry SDK reads these itself; they are here to be checked on load.
    otlp_endpoint: OtlpEndpoint | None = _otlp_variable("ENDPOINT")
    otlp_traces_endpoint: OtlpEndpoint | None = _otlp_variable("TRACES_ENDPOINT")
    otlp_metrics_endpoint: OtlpEndpoint | None = _otlp_variable("METRICS_ENDPOINT")
    otlp_logs_endpoint: OtlpEndpoint | None = _otlp_variable("LOGS_ENDPOINT")
    otlp_protocol: OtlpProtocol | None = _otlp_variable("PROTOCOL")
    otlp_traces_protocol: OtlpProtocol | None = _otlp_variable("TRACES_PROTOCOL")
    otlp_metrics_protocol: OtlpProtocol | None = _otlp_variable("METRICS_PROTOCOL")
    otlp_logs_protocol: OtlpProtocol | None = _otlp_variable("LOGS_PROTOCOL")

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
        problems = []
        for name in self.required_secrets():
            value = getattr(self, name)
            raw = value.get_secret_value() if isinstance(value, SecretStr) else value
            text = "" if raw is None else str(raw).strip()
            if text.lower() in _PLACEHOLDER_SECRETS or len(text) < _MIN_SECRET_LENGTH:
                problems.append(
                    f"{self.variable_name((name,))}: must be set to a real secret (at least "
                    f"{_MIN_SECRET_LENGTH} characters) when ENVIRONMENT={self.environment.value}"
                )
        if problems:
            raise ValueError("\n".join(problems))  # one line per problem (see load_settings)
        return self

    @classmethod
    def variable_name(cls, location: Sequence[int | str]) -> str:
        """The environment variable behind a validation error's location, e.g.
        ``("kafka", "bootstrap_servers")`` -> ``API_KAFKA__BOOTSTRAP_SERVERS``."""
        if not location:
            return ""
        head, *rest = (str(part) for part in location)
        field = cls.model_fields.get(head)
        alias = field.validation_alias if field is not None else None
        if isinstance(alias, AliasChoices):
            return next(str(c) for c in alias.choices if str(c).isupper())
        delimiter = cls.model_config.get("env_nested_delimiter") or "__"
        if field is not None and not rest and _is_model(field.annotation):
            rest = ["*"]  # a check across the nested model's fields: API_KAFKA__*
        name = cls.model_config.get("env_prefix", "") + delimiter.join([head, *rest])
        return name.upper()

    def required_secrets(self) -> Iterable[str]:
        """Field names that must hold a real secret outside development."""
        return ()

    @property
    def effective_log_level(self) -> LogLevel:
        assert self.log_level is not None  # filled by the validator
        return self.log_level

    @property
    def telemetry_on(self) -> bool:
        """Request telemetry runs: neither `TELEMETRY_ENABLED=false` nor `OTEL_SDK_DISABLED`."""
        return self.telemetry_enabled and not self.otel_sdk_disabled

    @property
    def traces_sampler(self) -> str:
        """`OTEL_TRACES_SAMPLER` when set, else a parent-based ratio (`OTEL_TRACES_SAMPLER_ARG`,
        by default the environment's)."""
        return self.otel_traces_sampler or "parentbased_traceidratio"

    @property
    def effective_log_format(self) -> LogFormat:
        assert self.log_format is not None
        return self.log_format


_S = TypeVar("_S", bound=ServiceSettings)
_NAMED: Final = re.compile(r"[A-Z][A-Z0-9_]*: ")


def _is_model(annotation: object) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def settings_problems(cls: type[ServiceSettings], error: ValidationError) -> list[str]:
    """One line per problem, naming the variable where one is at fault:
    ``invalid setting API_DATABASE_URL: postgres:// names a driver ...``."""
    lines: list[str] = []
    for problem in error.errors(include_url=False, include_input=False):
        message = str(problem["msg"]).removeprefix("Value error, ")
        variable = cls.variable_name(problem["loc"])
        for line in message.splitlines():
            if variable:
                lines.append(f"invalid setting {variable}: {line}")
            elif _NAMED.match(line):
                lines.append(f"invalid setting {line}")
            else:
                lines.append(f"invalid settings: {line}")
    return lines


def load_settings(cls: type[_S]) -> _S:
    """Build settings from the environment, or exit with status 2 and one line per problem
    (``invalid setting API_DATABASE_URL: ...``) that an operator can act on."""
    try:
        return cls()
    except ValidationError as exc:
        lines = settings_problems(cls, exc)
    except SettingsError as exc:  # a nested setting given as JSON that does not parse
        field = re.search(r'field "(\w+)"', str(exc))
        variable = cls.variable_name((field[1],)).removesuffix("__*") if field else "settings"
        lines = [f"invalid setting {variable}: is not valid JSON (or set {variable}__<FIELD>)"]
    sys.stderr.write("".join(f"{line}\n" for line in lines))
    raise SystemExit(2)
