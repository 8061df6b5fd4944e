"""One delivery attempt: sign the exact body, POST it, classify the answer.

Any 2xx is success. 3xx is a failure and is never followed. 410 Gone means the subscriber
wants no more: the subscription is disabled and nothing is retried. Every other answer (and
every network error or timeout) is retried on the schedule; 429/503 `Retry-After` is honoured.

What the endpoint answered is kept for the tenant's delivery log: at most the first
``BODY_LIMIT`` bytes of its body (never more is read), decoded leniently, with control
characters replaced and secrets redacted as logs redact them: secret-shaped text anywhere, and
the value of every JSON field whose key looks sensitive (`"password": "..."`, `"token": ...`).
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Final

import aiohttp

from mandate_vault_shared.http_client import traced_request
from mandate_vault_shared.ssrf import SsrfBlocked
from mandate_vault_shared.telemetry.redact import REDACTED, is_sensitive_key, redact_text
from mandate_vault_shared.telemetry.semconv import HttpClientTelemetry
from mandate_vault_shared.webhooks import signature_header

USER_AGENT: Final = "MandateVault-Webhooks/1.0"
_ERROR_LIMIT: Final = 500
BODY_LIMIT: Final = 1024
# A body that has not come within this time after the headers is recorded as far as it came:
# the status decides the outcome, the body is only for the log.
_BODY_SECONDS: Final = 1.0
# Control characters (C0 but tab, LF and CR; DEL; C1) never reach the delivery log.
_UNPRINTABLE: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# A JSON field with a string or scalar value, `"key": "value"` / `"key": 123`; a string the
# 1 KiB cut left open runs to the end.
_JSON_FIELD: Final = re.compile(
    r'"((?:[^"\\]|\\.)*)"(\s*:\s*)("(?:[^"\\]|\\.)*(?:"|$)|[^\s,{}\[\]"]+)'
)


class Outcome(StrEnum):
    SUCCESS = "success"
    RETRY = "retry"
    GONE = "gone"


@dataclass(frozen=True)
class AttemptResult:
    outcome: Outcome
    status_code: int | None
    seconds: float
    error: str | None = None
    retry_after: float | None = None
    body: str | None = None  # the first BODY_LIMIT bytes of the answer, readable and redacted


@dataclass(frozen=True)
class Target:
    url: str
    secrets: tuple[str, ...]


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - now).total_seconds(), 0.0)


def readable_body(raw: bytes) -> str | None:
    """The answer's body as the delivery log keeps it (None when there was none)."""
    if not raw:
        return None
    text = redact_text(_UNPRINTABLE.sub("?", raw[:BODY_LIMIT].decode("utf-8", errors="replace")))
    return _JSON_FIELD.sub(_redact_field, text) if '":' in text else text


def _redact_field(match: re.Match[str]) -> str:
    key, colon, _ = match.groups()
    if not is_sensitive_key(key):
        return match.group(0)
    return f'"{key}"{colon}"{REDACTED}"'


async def _head_of_body(response: aiohttp.ClientResponse) -> bytes:
    if response.content_length == 0:
        return b""
    found = bytearray()
    try:
        async with asyncio.timeout(_BODY_SECONDS):
            while len(found) < BODY_LIMIT:
                chunk = await response.content.read(BODY_LIMIT - len(found))
                if not chunk:
                    break
                found += chunk
    except (TimeoutError, aiohttp.ClientError):
        pass  # the answer's status is what counts; keep what arrived
    return bytes(found)


def _classify(status: int) -> Outcome:
    if 200 <= status < 300:
        return Outcome.SUCCESS
    if status == 410:
        return Outcome.GONE
    return Outcome.RETRY


async def attempt_delivery(
    session: aiohttp.ClientSession,
    http: HttpClientTelemetry,
    target: Target,
    event_id: str,
    body: bytes,
    timeout_seconds: float,
) -> AttemptResult:
    timestamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": event_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(target.secrets, event_id, timestamp, body),
    }
    started = time.perf_counter()
    try:
        async with traced_request(
            session,
            http,
            "POST",
            target.url,
            headers=headers,
            data=body,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=timeout_seconds),
        ) as response:
            status = response.status
            retry_after = parse_retry_after(response.headers.get("Retry-After"), datetime.now(UTC))
            raw = await _head_of_body(response)
    except SsrfBlocked as exc:
        return AttemptResult(
            Outcome.RETRY, None, time.perf_counter() - started, f"refused: {exc.detail}"
        )
    except TimeoutError:
        return AttemptResult(Outcome.RETRY, None, time.perf_counter() - started, "timed out")
    except aiohttp.ClientError as exc:
        reason = f"{type(exc).__name__}: {exc}"[:_ERROR_LIMIT]
        return AttemptResult(Outcome.RETRY, None, time.perf_counter() - started, reason)
    seconds = time.perf_counter() - started
    outcome = _classify(status)
    error: str | None = None if outcome is Outcome.SUCCESS else f"HTTP {status}"
    if 300 <= status < 400:
        error = f"HTTP {status}: redirects are not followed"
    return AttemptResult(outcome, status, seconds, error, retry_after, readable_body(raw))
