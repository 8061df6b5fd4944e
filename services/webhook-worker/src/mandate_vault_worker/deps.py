"""What the lifespan built, as the probe routes see it (the same shape in every service)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict, cast

from fastapi import Request

from mandate_vault_worker.consumer import JobConsumer
from mandate_vault_worker.handlers import WorkerDeps


@dataclass(frozen=True, slots=True)
class WorkerContext:
    """The consumer and every client its deliveries use, built once by the lifespan."""

    consumer: JobConsumer
    deps: WorkerDeps


class State(TypedDict):
    context: WorkerContext


def context_of(request: Request) -> WorkerContext:
    # uvicorn copies the lifespan's state into every request's scope
    return cast(State, request.scope["state"])["context"]
