"""One delivery attempt: sign the exact body, POST it, classify the answer.

Any 2xx is success. 3xx is a failure and is never followed. 410 Gone means the subscriber
wants no more: the subscription is disabled and nothing is retried. Every other answer (and
every network error or timeout) is retried on the schedule; 429/503 `Retry-After` is honoured.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Final

import aiohttp

from mandate_vault_shared.http_client import traced_request
from mandate_vault_shared.ssrf import SsrfBlocked
from mandate_vault_shared.telemetry.semconv import HttpClientTelemetry
from mandate_vault_shared.webhooks import signature_header

USER_AGENT: Final = "MandateVault-Webhooks/1.0"
_ERROR_LIMIT: Final = 500


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
    return AttemptResult(outcome, status, seconds, error, retry_after)
