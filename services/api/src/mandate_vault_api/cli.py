"""``mandate-vault``: operator commands for the api's database and keys.

    mandate-vault migrate                     apply the migrations
    mandate-vault bootstrap --tenant-id acme --tenant-name "Acme" \\
        --admin-email ops@acme.example [--issuer did:web:bank.example.com ...]
    mandate-vault keys new-signing-key [--kid KID]   print a new API_TOKEN_SIGNING_KEY entry
    mandate-vault keys new-encryption-key            print a new Fernet key
    mandate-vault keys status                        which keys sign/encrypt; stale secrets
    mandate-vault keys reencrypt                     move stored webhook secrets to the newest key

`bootstrap` creates the tenant, its first admin and the issuers it trusts, skipping what
exists. The admin's password comes from MV_BOOTSTRAP_PASSWORD or is generated; it is printed
once to this terminal and written to no log. Key rotation is described in docs/deploy.md.

Each command is a `Command` in `COMMANDS`: a name, how it adds its arguments and the function
that runs it (returning the lines to print). Add a command by adding an entry.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from cryptography.fernet import Fernet
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from mandate_vault_api import directory, migrate
from mandate_vault_api.auth import normalize_email
from mandate_vault_api.clock import utc_now
from mandate_vault_api.credentials import new_signing_key
from mandate_vault_api.database import Database
from mandate_vault_api.key_rotation import count_stale, reencrypt_secrets
from mandate_vault_api.roles import Role
from mandate_vault_api.settings import ApiSettings
from mandate_vault_shared.db.engine import create_engine
from mandate_vault_shared.db.schema import tenants, users
from mandate_vault_shared.errors import Conflict
from mandate_vault_shared.settings import load_settings
from mandate_vault_shared.webhooks import SecretBox

PASSWORD_ENV = "MV_BOOTSTRAP_PASSWORD"  # noqa: S105 - the variable's name

Lines = list[str]


@dataclass(frozen=True)
class Command:
    help: str
    run: Callable[[ApiSettings, argparse.Namespace], Coroutine[None, None, Lines]]
    arguments: Callable[[argparse.ArgumentParser], None] = lambda _parser: None
    needs_settings: bool = True  # False: runs without a database or secrets


@asynccontextmanager
async def _database(settings: ApiSettings) -> AsyncIterator[Database]:
    engine = create_engine(settings.database_url)
    try:
        yield Database(engine)
    finally:
        await engine.dispose()


# --- migrate, bootstrap -----------------------------------------------------------------------
async def _migrate(settings: ApiSettings, _: argparse.Namespace) -> Lines:
    await asyncio.to_thread(migrate.upgrade, settings.database_url)
    return ["database is at the latest migration"]


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
    async with _database(settings) as db, db.transaction() as conn:
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
    async with _database(settings) as db:
        total, stale = await count_stale(db, SecretBox(settings.encryption_key))
    return [
        f"access tokens: signed with kid {kids[0]}; accepted kids {', '.join(kids)}",
        f"webhook secrets: {total} stored, {stale} not under the newest encryption key"
        + (" (run `mandate-vault keys reencrypt`)" if stale else ""),
    ]


async def _reencrypt(settings: ApiSettings, _: argparse.Namespace) -> Lines:
    async with _database(settings) as db:
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
    "status": Command("which keys sign and encrypt; secrets not yet re-encrypted", _key_status),
    "reencrypt": Command("re-encrypt stored webhook secrets with the newest key", _reencrypt),
}

COMMANDS: dict[str, Command] = {
    "migrate": Command("apply database migrations", _migrate),
    "bootstrap": Command(
        "create a tenant, its admin and trusted issuers", _bootstrap, _bootstrap_arguments
    ),
}
GROUPS: dict[str, tuple[str, dict[str, Command]]] = {
    "keys": ("rotate access-token and webhook-secret keys", KEY_COMMANDS),
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


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    command: Command = args.handler
    # key generators need no database or secrets: defaults, no environment
    settings = (
        load_settings(ApiSettings) if command.needs_settings else ApiSettings.model_construct()
    )
    for line in asyncio.run(command.run(settings, args)):
        sys.stdout.write(line + "\n")


if __name__ == "__main__":
    main()
