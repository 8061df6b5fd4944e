"""`mandate-vault` on a database that is not (or no longer) at the latest migration, and the
migration commands: history, current, downgrade and offline SQL. Real CLI processes."""

from __future__ import annotations

from pathlib import Path

from mandate_vault_harness.net import free_port
from mandate_vault_harness.services import cli

BOOTSTRAP = ["bootstrap", "--tenant-id", "t", "--tenant-name", "T", "--admin-email", "a@t.example"]
MIGRATE_HINT = "run `mandate-vault migrate`"


def one_line_exit_2(database_url: str, *args: str) -> str:
    result = cli(database_url, *args)
    assert result.returncode == 2, result
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


async def test_commands_on_an_unmigrated_database_say_to_migrate(database_url: str) -> None:
    for command in (BOOTSTRAP, ["keys", "status"], ["keys", "reencrypt"]):
        line = one_line_exit_2(database_url, *command)
        assert line == f"mandate-vault: the database has no tables yet: {MIGRATE_HINT}"


def test_a_missing_sqlite_file_is_reported_not_created(tmp_path: Path) -> None:
    database = tmp_path / "var" / "mandate_vault.db"
    url = f"sqlite+aiosqlite:///{database}"
    line = one_line_exit_2(url, *BOOTSTRAP)
    assert line == f"mandate-vault: there is no database at {database} yet: {MIGRATE_HINT}"
    current = cli(url, "migrations", "current")
    assert current.stdout.splitlines() == [f"no migration applied: {MIGRATE_HINT}"]
    assert not database.exists()


def test_history_current_and_downgrade(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/mandate_vault.db"
    history = cli(url, "migrations", "history").stdout.splitlines()
    assert history[-2:] == [
        "0001 -> 0002, webhooks and outbox",
        "<base> -> 0001, initial schema",
    ]
    assert "(head)" in history[0]
    head = history[0].split(" -> ")[1].split(" ")[0]  # newest first: "<prev> -> <head> (head), ..."
    assert cli(url, "migrate", "0001").stdout.splitlines() == ["database is at revision 0001"]
    assert cli(url, "migrations", "current").stdout.splitlines() == ["0001"]
    behind = one_line_exit_2(url, *BOOTSTRAP)
    assert (
        behind
        == f"mandate-vault: the database is at revision 0001, this version needs {head}: {MIGRATE_HINT}"
    )

    assert cli(url, "migrate").stdout.splitlines() == ["database is at the latest migration"]

    down = cli(url, "migrations", "downgrade", "0001")
    assert down.stdout.splitlines() == ["database is at revision 0001"], down.stderr
    assert cli(url, "migrations", "current").stdout.splitlines() == ["0001"]
    unknown = one_line_exit_2(url, "migrations", "downgrade", "no-such-revision")
    assert unknown == "mandate-vault: Can't locate revision identified by 'no-such-revision'"


def test_sql_output_needs_no_database() -> None:
    nowhere = f"postgresql+asyncpg://mv@127.0.0.1:{free_port()}/nothing"  # nothing listens
    upgrade = cli(nowhere, "migrate", "--sql")
    assert upgrade.returncode == 0, upgrade.stderr
    assert "CREATE TABLE tenants" in upgrade.stdout
    assert "UPDATE alembic_version SET version_num='0002'" in upgrade.stdout

    downgrade = cli(nowhere, "migrations", "downgrade", "0002:0001", "--sql")
    assert downgrade.returncode == 0, downgrade.stderr
    assert "DROP TABLE outbox" in downgrade.stdout
    without_start = one_line_exit_2(nowhere, "migrations", "downgrade", "0001", "--sql")
    assert "FROM:TO" in without_start


def test_an_unreachable_database_is_one_line_without_the_password() -> None:
    port = free_port()
    line = one_line_exit_2(f"postgresql+asyncpg://mv:hunter2@127.0.0.1:{port}/x", "migrate")
    assert line.startswith(
        f"mandate-vault: cannot use the database at postgresql+asyncpg://mv:***@127.0.0.1:{port}/x"
        " (API_DATABASE_URL): "
    )
    assert "hunter2" not in line
