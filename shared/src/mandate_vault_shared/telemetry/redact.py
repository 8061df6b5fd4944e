"""Remove secrets from anything that leaves the process as telemetry.

Secrets are caught two ways: by the *key* they sit under (password, token, authorization, ...)
and by their *shape* wherever they appear in text (a JWT, a `whsec_` webhook secret, an `mvk_`
API key, an `mvr_` refresh token, a bearer credential, `secret=...` in a query string). Key
matching alone misses a JWT quoted in an exception message; shape matching alone misses a
password. Logs, span attributes and Sentry events all go through these functions.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Final

REDACTED: Final = "[REDACTED]"

_SENSITIVE_KEY_PARTS: Final = (
    "password",
    "passwd",
    "secret",
    "token",
    "authorization",
    "api_key",
    "apikey",
    "api-key",
    "cookie",
    "credential",
    "private_key",
    "jwt",
    "dsn",
    "session",
)

_SECRET_SHAPES: Final = re.compile(
    r"eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*"  # JWS compact (header is base64 JSON)
    r"|whsec_[A-Za-z0-9+/=_-]+"  # webhook signing secret
    r"|mv[kr]_[A-Za-z0-9_-]+"  # API key / refresh token
    r"|(?i:bearer|basic)\s+[A-Za-z0-9._~+/=-]+"  # credentials in an Authorization value
)
_SECRET_ASSIGNMENTS: Final = re.compile(
    r"(?i)\b((?:password|passwd|secret|token|api[_-]?key|access_token|refresh_token|sig)"
    r"\s*[=:]\s*)([^&\s,;\"']+)"
)


# Every secret shape or assignment above contains one of these: one search rules most text out.
_TRIGGERS: Final = re.compile(
    r"eyJ|whsec_|mv[kr]_|(?i:bearer|basic|passw|secret|token|api[_-]?key|sig)"
)


@functools.lru_cache(maxsize=4096)
def is_sensitive_key(key: str) -> bool:
    lowered = key.lower()
    return any(part in lowered for part in _SENSITIVE_KEY_PARTS)


def might_hold_secret(text: str) -> bool:
    # Every shape needs an underscore, an "eyJ", a space, "=" or ":"; checking for those with
    # `in` (C speed) rules out most values (ids, routes, hosts) before any regex runs.
    if not ("_" in text or "eyJ" in text or " " in text or "=" in text or ":" in text):
        return False
    return _TRIGGERS.search(text) is not None


def redact_text(text: str) -> str:
    """Replace every secret-shaped substring; one regex search when there is none."""
    if not might_hold_secret(text):
        return text
    text = _SECRET_SHAPES.sub(REDACTED, text)
    return _SECRET_ASSIGNMENTS.sub(r"\1" + REDACTED, text)


def redact(value: Any) -> Any:
    """Return `value` with secrets removed from every nested key and string."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {
            k: REDACTED if isinstance(k, str) and is_sensitive_key(k) and v else redact(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(redact(item) for item in value)
    return value


def safe_attribute(key: str, value: Any) -> Any:
    """An attribute value with secrets removed: by its key, and by shape in strings."""
    if value and is_sensitive_key(key):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, list | tuple):
        return [redact_text(v) if isinstance(v, str) else v for v in value]
    return value
