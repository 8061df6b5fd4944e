"""What every `mandate-vault` command shares: the `Command` shape, the operator's error, the
database handle."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass

from mandate_vault_api.database import Database
from mandate_vault_api.settings import ApiSettings
from mandate_vault_shared.db.engine import create_engine

Lines = list[str]


@dataclass(frozen=True)
class Command:
    help: str
    run: Callable[[ApiSettings, argparse.Namespace], Coroutine[None, None, Lines]]
    arguments: Callable[[argparse.ArgumentParser], None] = lambda _parser: None
    needs_settings: bool = True  # False: runs without a database or secrets
    needs_schema: bool = False  # True: refuses to run before `mandate-vault migrate`


class CliError(Exception):
    """A problem the operator can fix: printed as one line, exit status 2."""


@asynccontextmanager
async def database(settings: ApiSettings) -> AsyncIterator[Database]:
    engine = create_engine(settings.database_url)
    try:
        yield Database(engine)
    finally:
        await engine.dispose()
