"""What the lifespan built, as the routes see it.

Read straight from the request's state (uvicorn copies the lifespan's state into every
request): FastAPI dependencies are re-solved on every request, and on the reference machine
each cost ~15 us, on a route that does ~0.5 ms of work in all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict, cast

from fastapi import Request

from mandate_vault_verifier.metrics import VerificationRecorder
from mandate_vault_verifier.verifier import Verifier


@dataclass(frozen=True, slots=True)
class VerifierContext:
    """Every long-lived client and setting a route may need, built once by the lifespan."""

    verifier: Verifier
    recorder: VerificationRecorder
    max_request_bytes: int


class State(TypedDict):
    context: VerifierContext


def context_of(request: Request) -> VerifierContext:
    return cast(State, request.scope["state"])["context"]
