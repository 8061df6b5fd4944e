"""Settings: defaults follow ENVIRONMENT, explicit variables win, bad values are refused."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mandate_vault_shared.settings import Environment, LogFormat, LogLevel, ServiceSettings


@pytest.mark.parametrize(
    ("environment", "level", "fmt", "log_rate", "trace_rate", "sentry_rate"),
    [
        ("development", LogLevel.DEBUG, LogFormat.TEXT, 1.0, 1.0, 1.0),
        ("staging", LogLevel.INFO, LogFormat.JSON, 1.0, 1.0, 1.0),
        ("production", LogLevel.WARNING, LogFormat.JSON, 0.1, 0.1, 0.1),
    ],
)
def test_defaults_by_environment(
    monkeypatch: pytest.MonkeyPatch,
    environment: str,
    level: LogLevel,
    fmt: LogFormat,
    log_rate: float,
    trace_rate: float,
    sentry_rate: float,
) -> None:
    for name in ("LOG_LEVEL", "LOG_FORMAT", "LOG_SAMPLE_RATE", "OTEL_TRACES_SAMPLER_ARG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ENVIRONMENT", environment)
    settings = ServiceSettings()
    assert settings.environment is Environment(environment)
    assert settings.log_level is level
    assert settings.log_format is fmt
    assert settings.log_sample_rate == log_rate
    assert settings.trace_sample_rate == trace_rate
    assert settings.sentry_traces_sample_rate == sentry_rate


def test_explicit_variables_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("LOG_LEVEL", "INFO")
    monkeypatch.setenv("LOG_FORMAT", "text")
    monkeypatch.setenv("LOG_SAMPLE_RATE", "0.5")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.25")
    settings = ServiceSettings()
    assert (settings.log_level, settings.log_format) == (LogLevel.INFO, LogFormat.TEXT)
    assert (settings.log_sample_rate, settings.trace_sample_rate) == (0.5, 0.25)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LOG_SAMPLE_RATE", "1.5"),
        ("LOG_LEVEL", "LOUD"),
        ("ENVIRONMENT", "prod"),
        ("LOG_FORMAT", "xml"),
    ],
)
def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        ServiceSettings()
