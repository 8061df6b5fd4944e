"""Apply the Alembic migrations (``mandate-vault migrate``; the k8s migration Job runs it)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Migrate to `revision`. Synchronous: call it from a thread inside an event loop."""
    if database_url.startswith("sqlite"):
        _ensure_sqlite_directory(database_url)
    command.upgrade(alembic_config(database_url), revision)


def _ensure_sqlite_directory(database_url: str) -> None:
    path = database_url.split("///", 1)[-1]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
