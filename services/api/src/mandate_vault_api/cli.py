"""``mandate-vault``: operator commands for the api's database and keys.

    mandate-vault migrate [REVISION] [--sql]  apply the migrations (or print their SQL)
    mandate-vault migrations history          every migration, newest first
    mandate-vault migrations current          the revision the database is at
    mandate-vault migrations downgrade REVISION [--sql]   migrate down to REVISION
    mandate-vault bootstrap --tenant-id acme --tenant-name "Acme" \\
        --admin-email ops@acme.example [--issuer did:web:bank.example.com ...]
    mandate-vault keys new-signing-key [--kid KID]   print a new API_TOKEN_SIGNING_KEY entry
    mandate-vault keys new-encryption-key            print a new Fernet key
    mandate-vault keys status                        which keys sign/encrypt; stale secrets
    mandate-vault keys reencrypt                     move stored webhook secrets to the newest key
    mandate-vault deliveries list [--tenant T] [--subscription S] [--status S] [--since TIME]
    mandate-vault deliveries attempts EVENT_ID        every attempt, with the endpoint's answer
    mandate-vault deliveries retry EVENT_ID...        deliver finished events again
    mandate-vault deliveries recover --subscription S --since TIME
    mandate-vault dead-letters list [--tenant T] [--subscription S] [--since TIME]
    mandate-vault dead-letters replay (EVENT_ID... | --tenant T | --subscription S |
        --since TIME | --all)                        deliver dead letters again, once each

Commands that need the tables (bootstrap, keys, deliveries, dead-letters) first check that the
database is at the latest migration and otherwise say, in one line and with exit status 2,
to run `mandate-vault migrate`; so do bad settings and an unreachable database.

`bootstrap` creates the tenant, its first admin and the issuers it trusts, skipping what
exists. The admin's password comes from MV_BOOTSTRAP_PASSWORD or is generated; it is printed
once to this terminal and written to no log. Key rotation is described in docs/deploy.md;
redelivery in docs/webhooks.md and docs/runbooks/webhook-dead-letters.md.

Each command is a `Command` in `COMMANDS`: a name, how it adds its arguments and the function
that runs it (returning the lines to print). Add a command by adding an entry.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
from collections.abc import Sequence

from alembic.util import CommandError
from cryptography.fernet import Fernet
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from mandate_vault_api import directory, migrate
from mandate_vault_api.auth import normalize_email
from mandate_vault_api.cli_redelivery import DEAD_LETTER_COMMANDS, DELIVERY_COMMANDS
from mandate_vault_api.cli_support import CliError, Command, Lines, database
from mandate_vault_api.clock import utc_now
from mandate_vault_api.credentials import new_signing_key
from mandate_vault_api.key_rotation import count_stale, reencrypt_secrets
from mandate_vault_api.roles import Role
from mandate_vault_api.settings import ApiSettings
from mandate_vault_shared.db.schema import tenants, users
from mandate_vault_shared.errors import Conflict, DomainError
from mandate_vault_shared.settings import load_settings
from mandate_vault_shared.webhooks import SecretBox

PASSWORD_ENV = "MV_BOOTSTRAP_PASSWORD"  # noqa: S105 - the variable's name


# --- migrate, migrations, bootstrap -----------------------------------------------------------
def _migrate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("revision", nargs="?", default="head", help="default: the latest")
    _sql_argument(parser)


def _downgrade_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("revision", help="the revision to go down to (`base`: no tables)")
    _sql_argument(parser)


def _sql_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sql", action="store_true", help="print the SQL instead of running it (no database)"
    )


async def _migrate(settings: ApiSettings, args: argparse.Namespace) -> Lines:
    url, revision = settings.database_url, args.revision
    lines = await asyncio.to_thread(migrate.upgrade, url, revision, sql=args.sql)
    if args.sql:
        return lines
    where = "the latest migration" if revision == "head" else f"revision {revision}"
    return [*lines, f"database is at {where}"]


async def _downgrade(settings: ApiSettings, args: argparse.Namespace) -> Lines:
    url, revision = settings.database_url, args.revision
    if args.sql and ":" not in revision:
        msg = (
            "--sql connects to nothing, so name where to start: FROM:TO, e.g. "
            "`mandate-vault migrations downgrade 0002:0001 --sql`"
        )
        raise CliError(msg)
    lines = await asyncio.to_thread(migrate.downgrade, url, revision, sql=args.sql)
    return lines if args.sql else [*lines, f"database is at revision {revision}"]


async def _history(settings: ApiSettings, _: argparse.Namespace) -> Lines:
    return await asyncio.to_thread(migrate.history, settings.database_url)


async def _current(settings: ApiSettings, _: argparse.Namespace) -> Lines:
    lines = await asyncio.to_thread(migrate.current, settings.database_url)
    return lines or [f"no migration applied: {migrate.MIGRATE_HINT}"]


def _bootstrap_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tenant-id", required=True)
    parser.add_argument("--tenant-name", required=True)
    parser.add_argument("--admin-email", required=True)
    parser.add_argument("--issuer", action="append", default=[], help="repeatable")


async def _bootstrap_rows(conn: AsyncConnection, args: argparse.Namespace, password: str) -> Lines:
    now, report = utc_now(), []
    exists = await conn.scalar(select(tenants.c.id).where(tenants.c.id == args.tenant_id))
    if exists is None:
        await directory.create_tenant(conn, args.tenant_id, args.tenant_name, now)
        report.append(f"created tenant {args.tenant_id}")
    email = normalize_email(args.admin_email)
    if await conn.scalar(select(users.c.id).where(users.c.email == email)) is None:
        await directory.create_user(conn, args.tenant_id, email, password, Role.ADMIN, now)
        report.append(f"created admin {email}")
    else:
        report.append(f"admin {email} exists (password unchanged)")
    for issuer in args.issuer:
        try:
            await directory.add_trusted_issuer(conn, args.tenant_id, issuer, now)
            report.append(f"trusted issuer {issuer}")
        except Conflict:
            report.append(f"issuer {issuer} already trusted")
    return report


async def _bootstrap(settings: ApiSettings, args: argparse.Namespace) -> Lines:
    password = os.environ.get(PASSWORD_ENV) or secrets.token_urlsafe(18)
    async with database(settings) as db, db.transaction() as conn:
        report = await _bootstrap_rows(conn, args, password)
    if not os.environ.get(PASSWORD_ENV) and any(
        line.startswith("created admin") for line in report
    ):
        report.append(f"admin password (shown once): {password}")
    return report


# --- keys -------------------------------------------------------------------------------------
async def _new_signing_key(_: ApiSettings, args: argparse.Namespace) -> Lines:
    return [new_signing_key(args.kid)]


async def _new_encryption_key(_: ApiSettings, __: argparse.Namespace) -> Lines:
    return [Fernet.generate_key().decode()]


async def _key_status(settings: ApiSettings, _: argparse.Namespace) -> Lines:
    kids = [kid for kid, _ in settings.signing_keys.keys]
    async with database(settings) as db:
        total, stale = await count_stale(db, SecretBox(settings.encryption_key))
    return [
        f"access tokens: signed with kid {kids[0]}; accepted kids {', '.join(kids)}",
        f"webhook secrets: {total} stored, {stale} not under the newest encryption key"
        + (" (run `mandate-vault keys reencrypt`)" if stale else ""),
    ]


async def _reencrypt(settings: ApiSettings, _: argparse.Namespace) -> Lines:
    async with database(settings) as db:
        done = await reencrypt_secrets(db, SecretBox(settings.encryption_key))
    return [f"webhook secrets: {done.checked} checked, {done.rewritten} moved to the newest key"]


def _kid_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kid", help="key id (default: a random one)")


KEY_COMMANDS: dict[str, Command] = {
    "new-signing-key": Command(
        "print a new `kid:secret` access-token key", _new_signing_key, _kid_argument, False
    ),
    "new-encryption-key": Command(
        "print a new Fernet key for webhook secrets", _new_encryption_key, needs_settings=False
    ),
    "status": Command(
        "which keys sign and encrypt; secrets not yet re-encrypted", _key_status, needs_schema=True
    ),
    "reencrypt": Command(
        "re-encrypt stored webhook secrets with the newest key", _reencrypt, needs_schema=True
    ),
}

MIGRATION_COMMANDS: dict[str, Command] = {
    "history": Command("every migration, newest first", _history),
    "current": Command("the revision the database is at", _current),
    "downgrade": Command("migrate down to a revision", _downgrade, _downgrade_arguments),
}

COMMANDS: dict[str, Command] = {
    "migrate": Command(
        "apply database migrations (or print their SQL)", _migrate, _migrate_arguments
    ),
    "bootstrap": Command(
        "create a tenant, its admin and trusted issuers",
        _bootstrap,
        _bootstrap_arguments,
        needs_schema=True,
    ),
}
GROUPS: dict[str, tuple[str, dict[str, Command]]] = {
    "migrations": ("migration history, current revision, downgrade", MIGRATION_COMMANDS),
    "keys": ("rotate access-token and webhook-secret keys", KEY_COMMANDS),
    "deliveries": ("the webhook delivery log; retry and recover deliveries", DELIVERY_COMMANDS),
    "dead-letters": ("list and replay dead-lettered webhook deliveries", DEAD_LETTER_COMMANDS),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mandate-vault", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, command in COMMANDS.items():
        sub = commands.add_parser(name, help=command.help)
        command.arguments(sub)
        sub.set_defaults(handler=command)
    for group, (description, members) in GROUPS.items():
        nested = commands.add_parser(group, help=description).add_subparsers(
            dest="subcommand", required=True
        )
        for name, command in members.items():
            sub = nested.add_parser(name, help=command.help)
            command.arguments(sub)
            sub.set_defaults(handler=command)
    return parser


async def _run(command: Command, settings: ApiSettings, args: argparse.Namespace) -> Lines:
    try:
        if command.needs_schema:
            problem = await migrate.schema_problem(settings.database_url)
            if problem is not None:
                raise CliError(problem)
        return await command.run(settings, args)
    except CommandError as exc:  # Alembic: an unknown revision, offline SQL without a range
        raise CliError(str(exc)) from None
    except DomainError as exc:  # e.g. a time in the future
        raise CliError(exc.detail) from None
    except (OSError, DBAPIError) as exc:
        url = make_url(settings.database_url).render_as_string(hide_password=True)
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        msg = f"cannot use the database at {url} (API_DATABASE_URL): {reason}"
        raise CliError(msg) from None


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    command: Command = args.handler
    # key generators need no database or secrets: defaults, no environment
    settings = (
        load_settings(ApiSettings) if command.needs_settings else ApiSettings.model_construct()
    )
    try:
        lines = asyncio.run(_run(command, settings, args))
    except CliError as exc:
        sys.stderr.write(f"mandate-vault: {exc}\n")
        raise SystemExit(2) from None
    for line in lines:
        sys.stdout.write(line + "\n")


if __name__ == "__main__":
    main()
