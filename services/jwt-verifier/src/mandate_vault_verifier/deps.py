"""What the lifespan built, as the routes see it.

Read straight from the request's state (uvicorn copies the lifespan's state into every
request): FastAPI dependencies are re-solved on every request, and on the reference machine
each cost ~15 us, on a route that does ~0.5 ms of work in all.
"""

from __future__ import annotations

from typing import TypedDict, cast

from fastapi import Request

from mandate_vault_verifier.metrics import VerificationRecorder
from mandate_vault_verifier.verifier import Verifier


class State(TypedDict):
    verifier: Verifier
    recorder: VerificationRecorder
    max_request_bytes: int


def service_state(request: Request) -> State:
    return cast(State, request.scope["state"])
