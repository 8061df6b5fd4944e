"""``mandate-vault``: operator commands for the api's database.

    mandate-vault migrate                     apply the migrations
    mandate-vault bootstrap --tenant-id acme --tenant-name "Acme" \\
        --admin-email ops@acme.example [--issuer did:web:bank.example.com ...]

`bootstrap` creates the tenant, its first admin and the issuers it trusts, skipping what
exists. The admin's password comes from MV_BOOTSTRAP_PASSWORD or is generated; it is printed
once to this terminal and written to no log.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from mandate_vault_api import directory, migrate
from mandate_vault_api.auth import normalize_email
from mandate_vault_api.clock import utc_now
from mandate_vault_api.database import Database
from mandate_vault_api.roles import Role
from mandate_vault_api.settings import ApiSettings
from mandate_vault_shared.db.engine import create_engine
from mandate_vault_shared.db.schema import tenants, users
from mandate_vault_shared.errors import Conflict
from mandate_vault_shared.settings import load_settings

PASSWORD_ENV = "MV_BOOTSTRAP_PASSWORD"  # noqa: S105 - the variable's name


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mandate-vault", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="apply database migrations")
    boot = commands.add_parser("bootstrap", help="create a tenant, its admin and trusted issuers")
    boot.add_argument("--tenant-id", required=True)
    boot.add_argument("--tenant-name", required=True)
    boot.add_argument("--admin-email", required=True)
    boot.add_argument("--issuer", action="append", default=[], help="repeatable")
    return parser


async def _bootstrap(conn: AsyncConnection, args: argparse.Namespace, password: str) -> list[str]:
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


async def _run_bootstrap(settings: ApiSettings, args: argparse.Namespace) -> list[str]:
    engine = create_engine(settings.database_url)
    try:
        async with Database(engine).transaction() as conn:
            password = os.environ.get(PASSWORD_ENV) or secrets.token_urlsafe(18)
            report = await _bootstrap(conn, args, password)
    finally:
        await engine.dispose()
    if not os.environ.get(PASSWORD_ENV) and any(
        line.startswith("created admin") for line in report
    ):
        report.append(f"admin password (shown once): {password}")
    return report


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    settings = load_settings(ApiSettings)
    if args.command == "migrate":
        migrate.upgrade(settings.database_url)
        sys.stdout.write("database is at the latest migration\n")
        return
    for line in asyncio.run(_run_bootstrap(settings, args)):
        sys.stdout.write(line + "\n")


if __name__ == "__main__":
    main()
