"""`mandate-vault deliveries ...` and `mandate-vault dead-letters ...`: the delivery log and
redelivery for operators, across tenants (`mandate_vault_api.redelivery` does the work, as for
the api). Each request is logged as `webhook_redelivery_requested` (source `cli`) on stderr, in
the services' log format; the worker that takes a redelivery up counts it in
`webhook_redeliveries_total{source="cli"}`.

Times are ISO 8601 with an offset (`2026-12-01T08:00:00Z`); a time in the future is refused.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from datetime import datetime
from typing import Any, Final

import orjson

from mandate_vault_api import redelivery
from mandate_vault_api.cli_support import CliError, Command, Lines, database
from mandate_vault_api.clock import as_utc, utc_now
from mandate_vault_api.redelivery import Kind, Selection, Source
from mandate_vault_api.settings import ApiSettings
from mandate_vault_shared.telemetry.logs import LogConfig, configure_logging

CLI_SERVICE: Final = "mandate-vault-cli"
_FINISHED: Final = ("retrying", "succeeded", "failed", "dead_lettered")


def _time(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        msg = f"not an ISO 8601 time: {value!r} (e.g. 2026-12-01T08:00:00Z)"
        raise argparse.ArgumentTypeError(msg) from None
    if parsed.tzinfo is None:
        msg = f"give the time with an offset, e.g. {value}Z for UTC"
        raise argparse.ArgumentTypeError(msg)
    return parsed


def _selectors(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tenant", help="only this tenant's deliveries")
    parser.add_argument("--subscription", help="only this subscription's deliveries")
    parser.add_argument("--since", type=_time, help="created at or after (ISO 8601, offset)")


def _list_arguments(parser: argparse.ArgumentParser) -> None:
    _selectors(parser)
    parser.add_argument("--limit", type=int, default=50, help="at most this many (newest first)")


def _deliveries_list_arguments(parser: argparse.ArgumentParser) -> None:
    _list_arguments(parser)
    parser.add_argument("--status", choices=_FINISHED, help="only deliveries in this state")


def _event_ids(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("event_ids", nargs="+", metavar="EVENT_ID", help="webhook-id (msg_...)")


def _recover_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--subscription", required=True)
    parser.add_argument("--since", type=_time, required=True, help="ISO 8601 with an offset")


def _replay_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("event_ids", nargs="*", metavar="EVENT_ID", help="these dead letters")
    _selectors(parser)
    parser.add_argument("--all", action="store_true", help="every dead letter (no selector)")


def _selection(args: argparse.Namespace, statuses: tuple[str, ...]) -> Selection:
    since = getattr(args, "since", None)
    if since is not None:
        redelivery.check_since(since, utc_now())
    return Selection(
        tenant_id=getattr(args, "tenant", None),
        subscription_id=getattr(args, "subscription", None),
        event_ids=tuple(getattr(args, "event_ids", None) or ()),
        since=since,
        statuses=statuses,
    )


def _when(value: datetime | None) -> str:
    return as_utc(value).isoformat(timespec="seconds") if value is not None else "-"


def _delivery_line(row: Any) -> str:
    last = row.last_status_code if row.last_status_code is not None else "-"
    error = f"  {row.last_error}" if row.last_error else ""
    return (
        f"{row.event_id}  {row.status:<13}  attempts={row.attempts}  last={last}  "
        f"created={_when(row.created_at)}  tenant={row.tenant_id}  "
        f"subscription={row.subscription_id}  {row.event_type}{error}"
    )


async def _show(
    settings: ApiSettings, args: argparse.Namespace, statuses: tuple[str, ...]
) -> Lines:
    async with database(settings) as db, db.read() as conn:
        rows = await redelivery.list_deliveries(conn, _selection(args, statuses), args.limit)
    return [_delivery_line(row) for row in rows] or ["no deliveries match"]


async def _list_deliveries(settings: ApiSettings, args: argparse.Namespace) -> Lines:
    return await _show(settings, args, (args.status,) if args.status else ())


async def _list_dead_letters(settings: ApiSettings, args: argparse.Namespace) -> Lines:
    return await _show(settings, args, (redelivery.DEAD_LETTERED,))


def _attempt_lines(row: Any) -> Lines:
    status = f"HTTP {row.status_code}" if row.status_code is not None else "no answer"
    wait = f"  retry-after={float(row.retry_after_seconds):g}s" if row.retry_after_seconds else ""
    error = f"  {row.error}" if row.error and row.error != status else ""
    lines = [
        f"#{row.attempt}  {_when(row.attempted_at)}  {row.outcome:<13}  {status}  "
        f"{float(row.latency_ms):g} ms{wait}{error}"
    ]
    if row.response_body:
        lines.append(f"    body: {orjson.dumps(row.response_body).decode()}")
    return lines


async def _attempts(settings: ApiSettings, args: argparse.Namespace) -> Lines:
    async with database(settings) as db, db.read() as conn:
        rows = await redelivery.list_attempts(conn, args.event_id)
    return [line for row in rows for line in _attempt_lines(row)] or ["no attempts recorded"]


def _audit(settings: ApiSettings, kind: Kind, selection: Selection, done: list[str]) -> None:
    configure_logging(
        LogConfig(
            service=CLI_SERVICE,
            level=settings.effective_log_level,
            format=settings.effective_log_format,
        ),
        stream=sys.stderr,
    )
    redelivery.audit(Source.CLI, kind, f"operator:{getpass.getuser()}", selection, done)


async def _schedule(
    settings: ApiSettings, kind: Kind, selection: Selection
) -> tuple[list[str], dict[str, str]]:
    """(scheduled event ids, the state of the selected events that were not scheduled)."""
    async with database(settings) as db:
        async with db.transaction() as conn:
            done = await redelivery.schedule(conn, selection, utc_now(), Source.CLI, kind)
        left: dict[str, str] = {}
        if selection.event_ids:
            async with db.read() as conn:
                found = await redelivery.list_deliveries(
                    conn, Selection(event_ids=selection.event_ids), len(selection.event_ids)
                )
            left = {row.event_id: row.status for row in found if row.event_id not in done}
    _audit(settings, kind, selection, done)
    return done, left


def _outcome_lines(event_ids: tuple[str, ...], done: list[str], left: dict[str, str]) -> Lines:
    lines = []
    for event_id in event_ids:
        if event_id in done:
            lines.append(f"{event_id}: scheduled")
        elif event_id in left:
            lines.append(
                f"{event_id}: not scheduled (status {left[event_id]}; subscription "
                "disabled or deleted, or already scheduled)"
            )
        else:
            lines.append(f"{event_id}: not found")
    return lines


async def _retry(settings: ApiSettings, args: argparse.Namespace) -> Lines:
    selection = _selection(args, redelivery.RETRYABLE)
    done, left = await _schedule(settings, Kind.RETRY, selection)
    return _outcome_lines(selection.event_ids, done, left)


async def _recover(settings: ApiSettings, args: argparse.Namespace) -> Lines:
    selection = _selection(args, redelivery.RECOVERABLE)
    done, _ = await _schedule(settings, Kind.RECOVER, selection)
    return [f"{len(done)} failed or dead-lettered deliveries scheduled for redelivery"]


async def _replay(settings: ApiSettings, args: argparse.Namespace) -> Lines:
    selection = _selection(args, (redelivery.DEAD_LETTERED,))
    if not (selection.event_ids or selection.tenant_id or selection.subscription_id) and not (
        args.all or selection.since
    ):
        msg = "name dead letters (EVENT_ID, --tenant, --subscription, --since) or pass --all"
        raise CliError(msg)
    done, left = await _schedule(settings, Kind.REPLAY, selection)
    if selection.event_ids:
        return _outcome_lines(selection.event_ids, done, left)
    return [f"{len(done)} dead letters scheduled for redelivery"]


def _event_id(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("event_id", metavar="EVENT_ID", help="webhook-id (msg_...)")


DELIVERY_COMMANDS: dict[str, Command] = {
    "list": Command(
        "deliveries, newest first", _list_deliveries, _deliveries_list_arguments, needs_schema=True
    ),
    "attempts": Command(
        "every attempt of an event, with what the endpoint answered",
        _attempts,
        _event_id,
        needs_schema=True,
    ),
    "retry": Command(
        "deliver finished events again (same webhook-id)", _retry, _event_ids, needs_schema=True
    ),
    "recover": Command(
        "redeliver a subscription's failed and dead-lettered events since a time",
        _recover,
        _recover_arguments,
        needs_schema=True,
    ),
}
DEAD_LETTER_COMMANDS: dict[str, Command] = {
    "list": Command(
        "dead-lettered deliveries, newest first",
        _list_dead_letters,
        _list_arguments,
        needs_schema=True,
    ),
    "replay": Command(
        "deliver dead letters again, once each", _replay, _replay_arguments, needs_schema=True
    ),
}
