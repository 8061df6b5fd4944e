"""The request id every answer carries (``X-Request-Id``): the caller's, when it is sane."""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from typing import Final

from starlette.types import Scope

REQUEST_ID_HEADER: Final = b"x-request-id"
_VALID_REQUEST_ID: Final = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


def incoming_request_id(scope: Scope) -> str:
    candidate = header(scope.get("headers", ()), REQUEST_ID_HEADER)
    if candidate is not None and _VALID_REQUEST_ID.fullmatch(candidate):
        return candidate
    # A correlation id, not a secret: no system call for it (os.urandom cost ~2 us).
    return format(random.getrandbits(128), "032x")
