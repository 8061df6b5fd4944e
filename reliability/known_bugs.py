"""Product bugs the scenarios found that are not fixed yet, so `make test` stays usable.

The report (docs/reliability.md) always shows such a scenario as FAIL with its causes. The
pytest wrappers (tests/reliability) mark a failed short run as an expected failure only when
every problem it found is one listed here (and the bug's telltale problem is among them); any
other problem fails the test. Delete an entry when its bug is fixed: the scenario must then pass.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from reliability.core import Row


@dataclass(frozen=True)
class KnownBug:
    summary: str
    telltale: str  # regex: a problem that shows this bug happened
    also: tuple[str, ...] = ()  # regexes: further problems the same bug causes

    def explains(self, problem: str) -> bool:
        return any(re.search(p, problem) for p in (self.telltale, *self.also))


LONG_CLAIMS = KnownBug(
    "api: an `iss` or `sub` longer than 512 characters is a 500 (StringDataRightTruncationError): "
    "mandates.py stores the verifier's unverified issuer/subject into VARCHAR(512) columns",
    telltale=r"server error: api POST /api/v1/mandates 500 StringDataRightTruncationError",
    also=(r"(iss of 600\+ chars|sub of 2,000 chars): HTTP 500",),
)
RAW_ASYNCPG_ERRORS = KnownBug(
    "api: the create transaction on raw asyncpg (fast_writes.py) lets a dropped database "
    "connection escape as a 500 (ConnectionDoesNotExistError/InterfaceError are not in "
    "DATABASE_DOWN_ERRORS, and the dead connection is not invalidated in the pool)",
    telltale=r"server error: api POST /api/v1/mandates 500 "
    r"(InterfaceError|ConnectionDoesNotExistError)",
    also=(r"answers neither 201 nor 503: \{('500': \d+|'no answer \(\w+\)': \d+|, )+\}",),
)
ADMIN_UNKNOWN_TENANT = KnownBug(
    "api: an admin naming a tenant that does not exist in X-Tenant-ID gets a 500 from "
    "POST /api/v1/mandates (ForeignKeyViolationError) instead of 404",
    telltale=r"server error: api POST /api/v1/mandates 500 ForeignKeyViolationError",
    also=(r"api: ST101 Server error on \d+ operations: \['POST /api/v1/mandates'\]",),
)
NUL_IN_TOKEN = KnownBug(
    "api: a NUL character in a stored string (vc_jwt) is a 500 (CharacterNotInRepertoireError)",
    telltale=r"server error: api POST /api/v1/mandates 500 CharacterNotInRepertoireError",
    also=(r"api: ST101 Server error on \d+ operations: \['POST /api/v1/mandates'\]",),
)
VALIDATION_ERROR_SCHEMA = KnownBug(
    "api: every 422 answer is the shared error shape ({error, detail: str, request_id, fields}) "
    "but the OpenAPI document declares FastAPI's HTTPValidationError ({detail: [...]})",
    telltale=r"api: ST108 Response violates schema",
)

KNOWN: dict[str, tuple[KnownBug, ...]] = {
    "hostile_jwts": (LONG_CLAIMS,),
    "postgres_restart": (RAW_ASYNCPG_ERRORS,),
    "schemathesis_fuzz": (
        VALIDATION_ERROR_SCHEMA,
        ADMIN_UNKNOWN_TENANT,
        NUL_IN_TOKEN,
        LONG_CLAIMS,
    ),
}


def explain(scenario: str, row: Row) -> list[str] | None:
    """The known bugs behind a failed row, or None when any problem is not explained by them."""
    bugs = KNOWN.get(scenario, ())
    if row.passed or not bugs:
        return None
    if not all(any(bug.explains(p) for bug in bugs) for p in row.problems):
        return None
    seen = [bug for bug in bugs if any(re.search(bug.telltale, p) for p in row.problems)]
    # a problem matched only by a bug's secondary patterns, with no telltale, is not explained
    for problem in row.problems:
        if not any(bug.explains(problem) for bug in seen):
            return None
    return [bug.summary for bug in seen] or None
