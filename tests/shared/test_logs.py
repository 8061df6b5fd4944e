"""The logging module on its own: sampling, levels, redaction."""

from __future__ import annotations

import io
import json
import random
from collections.abc import Iterator

import pytest
import structlog

from mandate_vault_shared.settings import LogFormat, LogLevel
from mandate_vault_shared.telemetry.logs import LogConfig, configure_logging


class Capture(io.StringIO):
    """A text stream without `.buffer`, so the str renderer is used."""


@pytest.fixture
def restore_logging() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.mark.usefixtures("restore_logging")
def test_sampling_keeps_about_the_configured_share_of_info_and_every_warning() -> None:
    random.seed(7)
    stream = Capture()
    configure_logging(
        LogConfig(service="t", level=LogLevel.DEBUG, format=LogFormat.JSON, sample_rate=0.25),
        stream=stream,
    )
    log = structlog.get_logger(logger_name="sampling")
    for _ in range(4000):
        log.info("sampled_info")
        log.debug("sampled_debug")
    for _ in range(500):
        log.warning("kept_warning")
        log.error("kept_error")

    events = [record["event"] for record in lines(stream)]
    # 4,000 draws at p=0.25: mean 1,000, sd ~27; +-150 is > 5 sd.
    assert 850 <= events.count("sampled_info") <= 1150
    assert 850 <= events.count("sampled_debug") <= 1150
    assert events.count("kept_warning") == 500
    assert events.count("kept_error") == 500


@pytest.mark.usefixtures("restore_logging")
def test_level_filters_below_the_configured_level() -> None:
    stream = Capture()
    configure_logging(
        LogConfig(service="t", level=LogLevel.WARNING, format=LogFormat.JSON), stream=stream
    )
    log = structlog.get_logger(logger_name="levels")
    log.debug("d")
    log.info("i")
    log.warning("w", user_id="u-1")
    log.error("e")
    records = lines(stream)
    assert [r["event"] for r in records] == ["w", "e"]
    assert records[0]["logger"] == "levels"
    assert records[0]["level"] == "warning"
    assert records[0]["user_id"] == "u-1"


@pytest.mark.usefixtures("restore_logging")
def test_secret_fields_and_secret_shaped_values_are_redacted() -> None:
    stream = Capture()
    configure_logging(LogConfig(service="t", format=LogFormat.JSON), stream=stream)
    log = structlog.get_logger(logger_name="redact")
    log.info(
        "login",
        password="hunter2",
        api_key="mvk_abc123",
        note="header was Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig and whsec_c2VjcmV0",
        url="/cb?token=abc&x=1",
        email="alice@example.com",
    )
    (record,) = lines(stream)
    assert record["password"] == "[REDACTED]"
    assert record["api_key"] == "[REDACTED]"
    assert record["note"] == "header was [REDACTED] and [REDACTED]"
    assert record["url"] == "/cb?token=[REDACTED]&x=1"
    assert record["email"] == "alice@example.com"
