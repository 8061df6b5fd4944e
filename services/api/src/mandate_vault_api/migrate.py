"""The Alembic migrations, through Alembic's command API (``mandate-vault migrate`` and
``mandate-vault migrations ...``; the k8s migration Job runs ``migrate``).

The functions that touch a database are synchronous (Alembic's env runs its own event loop):
call them from a thread inside an event loop. `schema_problem` is the async check the CLI runs
before commands that need the tables.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Final, TextIO

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import create_async_engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
MIGRATE_HINT: Final = "run `mandate-vault migrate`"


def alembic_config(database_url: str, output: TextIO | None = None) -> Config:
    """Alembic's configuration; with `output`, messages and offline SQL are written there."""
    config = Config(output_buffer=output, stdout=output or sys.stdout)
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def _captured(database_url: str, action: Callable[[Config], None]) -> list[str]:
    buffer = io.StringIO()
    action(alembic_config(database_url, buffer))
    return buffer.getvalue().splitlines()


def upgrade(database_url: str, revision: str = "head", *, sql: bool = False) -> list[str]:
    """Migrate to `revision`; with `sql`, connect to nothing and return the SQL instead."""
    if database_url.startswith("sqlite") and not sql:
        _ensure_sqlite_directory(database_url)
    return _captured(database_url, lambda config: command.upgrade(config, revision, sql=sql))


def downgrade(database_url: str, revision: str, *, sql: bool = False) -> list[str]:
    """Migrate down to `revision` (offline SQL needs ``from:to``)."""
    return _captured(database_url, lambda config: command.downgrade(config, revision, sql=sql))


def history(database_url: str) -> list[str]:
    """Every migration, newest first (reads the scripts only)."""
    return _captured(database_url, command.history)


def current(database_url: str) -> list[str]:
    """The revision the database is at (no lines when nothing was applied)."""
    path = _sqlite_path(database_url) if database_url.startswith("sqlite") else None
    if path is not None and not path.exists():
        return []  # rather than create an empty file
    return _captured(database_url, command.current)


def _ensure_sqlite_directory(database_url: str) -> None:
    path = _sqlite_path(database_url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)


def _sqlite_path(database_url: str) -> Path | None:
    database = make_url(database_url).database
    return Path(database) if database and database != ":memory:" else None


def _current_heads(connection: Connection) -> tuple[str, ...]:
    return MigrationContext.configure(connection).get_current_heads()


async def schema_problem(database_url: str) -> str | None:
    """Why the database cannot serve this version yet (one line), or None when it is at the
    latest migration. Connection failures propagate (the caller words them)."""
    scripts = ScriptDirectory.from_config(alembic_config(database_url))
    latest = set(scripts.get_heads())
    path = _sqlite_path(database_url) if database_url.startswith("sqlite") else None
    if path is not None and not path.exists():
        return f"there is no database at {path} yet: {MIGRATE_HINT}"
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            applied = set(await connection.run_sync(_current_heads))
    finally:
        await engine.dispose()
    if applied == latest:
        return None
    if not applied:
        return f"the database has no tables yet: {MIGRATE_HINT}"
    at, needs = ", ".join(sorted(applied)), ", ".join(sorted(latest))
    known = {revision.revision for revision in scripts.walk_revisions()}
    if not applied <= known:
        return (
            f"the database is at revision {at}, which this version does not know (latest {needs})"
        )
    return f"the database is at revision {at}, this version needs {needs}: {MIGRATE_HINT}"
