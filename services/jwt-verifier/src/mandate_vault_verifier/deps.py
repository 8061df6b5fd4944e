"""Dependencies: the lifespan's objects, as typed FastAPI parameters."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request

from mandate_vault_verifier.telemetry import VerificationRecorder
from mandate_vault_verifier.verifier import Verifier


async def get_verifier(request: Request) -> Verifier:
    return cast(Verifier, request.state.verifier)


async def get_recorder(request: Request) -> VerificationRecorder:
    return cast(VerificationRecorder, request.state.recorder)


async def get_max_request_bytes(request: Request) -> int:
    return cast(int, request.state.max_request_bytes)


VerifierDep = Annotated[Verifier, Depends(get_verifier)]
RecorderDep = Annotated[VerificationRecorder, Depends(get_recorder)]
MaxRequestBytesDep = Annotated[int, Depends(get_max_request_bytes)]
