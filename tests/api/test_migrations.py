"""Migrations create exactly the schema the code uses, on PostgreSQL and on SQLite."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from mandate_vault_api import migrate
from mandate_vault_shared.db.schema import metadata


async def schema_diff(url: str) -> list[object]:
    engine = create_async_engine(url)

    def compare(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))

    try:
        async with engine.connect() as conn:
            return await conn.run_sync(compare)
    finally:
        await engine.dispose()


@pytest.fixture(params=["postgresql", "sqlite"])
def any_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/nested/dir/mv.db"
    return str(request.getfixturevalue("database_url"))


async def test_migrations_match_the_schema_and_round_trip(any_database: str) -> None:
    await asyncio.to_thread(migrate.upgrade, any_database)
    assert await schema_diff(any_database) == []
    config = migrate.alembic_config(any_database)
    await asyncio.to_thread(command.downgrade, config, "base")
    assert await schema_diff(any_database) != []
    await asyncio.to_thread(migrate.upgrade, any_database)
    assert await schema_diff(any_database) == []
