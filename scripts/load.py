"""`make load`: load/locustfile.py's mix against a running api, then a report with plots.

    uv run python scripts/load.py                          # the `make run` stack, 60 s
    uv run python scripts/load.py --rps 40 --users 20 --seconds 120
    LOAD_HOST=https://api.example LOAD_EMAIL=ops@acme.example LOAD_PASSWORD=... \\
        uv run python scripts/load.py --issuer-key bank.pem --issuer did:web:bank.example

Runs locust headless (its CSV stats history on), prints a progress line every few seconds, and
writes <out-dir>/load-<UTC timestamp>/: report.md (summary table per request and in total:
count, p50/p95/p99/max, errors by cause, achieved vs target rate), throughput.png, latency.png,
summary.json and locust's own CSV files and HTML page.

Credentials: --email with LOAD_PASSWORD (or --password) of an admin of a tenant that trusts the
issuer; without them a fresh tenant trusting the demo issuer is bootstrapped with
`mandate-vault bootstrap` into the database this machine's api uses (API_DATABASE_URL, default
`make run`'s SQLite file), which only works for a local stack.

Every flag has an environment variable: LOAD_HOST, LOAD_USERS, LOAD_RPS, LOAD_SECONDS,
LOAD_SPAWN_RATE, LOAD_EMAIL, LOAD_PASSWORD, LOAD_ISSUER_KEY, LOAD_ISSUER, LOAD_KID,
LOAD_TENANT_ID, LOAD_WEBHOOK_URL, LOAD_OUT_DIR. `--report-only DIR` rebuilds a report from a
run directory's CSV files.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from mandate_vault_harness.issuer import DEMO_ISSUER, DEMO_KID, demo_key_file

ROOT = Path(__file__).resolve().parent.parent

LOCUSTFILE = ROOT / "load" / "locustfile.py"
CSV_PREFIX = "locust"
TOTAL = "Aggregated"
ROLLING_SECONDS = 5  # window of the achieved and failed rates over time


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def _add_options(parser: argparse.ArgumentParser) -> None:
    """Every option, each defaulting to its LOAD_* variable."""

    def option(flag: str, variable: str, default: str, text: str, **kwargs: Any) -> None:
        shown = f"default {default}" if default else "no default"
        parser.add_argument(
            flag,
            default=_env(variable, default),
            help=f"{text} (${variable}; {shown})",
            **kwargs,
        )

    option("--host", "LOAD_HOST", "http://127.0.0.1:8000", "the api's base URL")
    option("--users", "LOAD_USERS", "10", "simulated tenant clients", type=int)
    option("--rps", "LOAD_RPS", "20", "target requests/s over all users, 0: unpaced", type=float)
    option("--seconds", "LOAD_SECONDS", "60", "duration of the run", type=int)
    option(
        "--spawn-rate",
        "LOAD_SPAWN_RATE",
        "0",
        "users started per second, 0: ramp over a tenth of the run (1 to 10 s)",
        type=float,
    )
    option("--email", "LOAD_EMAIL", "", "tenant admin; without it a tenant is bootstrapped")
    parser.add_argument(
        "--password",
        default=os.environ.get("LOAD_PASSWORD", ""),
        help="the admin's password; prefer $LOAD_PASSWORD (a flag shows in `ps`)",
    )
    option(
        "--issuer-key", "LOAD_ISSUER_KEY", str(demo_key_file()), "PEM private key signing mandates"
    )
    option("--issuer", "LOAD_ISSUER", DEMO_ISSUER, "the key's issuer DID, trusted by the tenant")
    option("--kid", "LOAD_KID", DEMO_KID, "key id in the mandates' JWT header")
    option("--tenant-id", "LOAD_TENANT_ID", "", "X-Tenant-ID to act on (platform admins)")
    option(
        "--webhook-url",
        "LOAD_WEBHOOK_URL",
        "http://127.0.0.1:9/mandate-vault-load",
        "where subscriptions point (must pass the api's SSRF allow-list)",
    )
    option(
        "--out-dir",
        "LOAD_OUT_DIR",
        str(ROOT / "reports"),
        "where load-<timestamp>/ goes",
        type=Path,
    )
    parser.add_argument(
        "--progress-seconds", type=float, default=5.0, help="seconds between progress lines"
    )
    parser.add_argument(
        "--report-only", type=Path, metavar="RUN_DIR", help="rebuild the report of a run dir"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    _add_options(parser)
    args = parser.parse_args(argv)
    if args.users < 1 or args.seconds < 1 or args.rps < 0:
        parser.error("--users and --seconds must be positive, --rps not negative")
    args.host = args.host.rstrip("/")
    if not args.spawn_rate:  # staggered starts: a fleet of clients does not log in as one
        args.spawn_rate = args.users / min(10.0, max(1.0, args.seconds / 10))
    return args


# --- before the run ----------------------------------------------------------------------------


def check_reachable(host: str) -> None:
    try:
        httpx.get(f"{host}/healthz", timeout=5).raise_for_status()
    except httpx.HTTPError as exc:
        sys.exit(f"load: {host}/healthz does not answer ({exc}); start `make run` or pass --host")


def bootstrap_tenant(issuer: str) -> tuple[str, str, str]:
    """A fresh tenant and admin via `mandate-vault bootstrap`; returns tenant, e-mail, password."""
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    tenant = f"load-{stamp}-{secrets.token_hex(2)}"
    email, password = f"admin@{tenant}.example", secrets.token_urlsafe(24)
    command = [
        sys.executable, "-m", "mandate_vault_api.cli", "bootstrap",
        "--tenant-id", tenant, "--tenant-name", f"Load test {stamp}",
        "--admin-email", email, "--issuer", issuer,
    ]  # fmt: skip
    env = {**os.environ, "MV_BOOTSTRAP_PASSWORD": password}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"load: bootstrap failed:\n{done.stdout}{done.stderr}")
    where = os.environ.get("API_DATABASE_URL", "var/mandate_vault.db")
    print(f"load: bootstrapped tenant {tenant}, admin {email}, trusting {issuer} ({where})")
    return tenant, email, password


def check_login(host: str, email: str, password: str, bootstrapped: bool) -> None:
    try:
        answer = httpx.post(
            f"{host}/api/v1/auth/login", json={"email": email, "password": password}, timeout=30
        )
    except httpx.HTTPError as exc:
        sys.exit(f"load: login at {host} failed: {exc}")
    if answer.status_code == 200:
        return
    hint = (
        " (the bootstrapped tenant lives in this machine's database; for another api pass "
        "--email and LOAD_PASSWORD of an admin there)"
        if bootstrapped
        else ""
    )
    sys.exit(f"load: login as {email} answered {answer.status_code} {answer.text[:200]}{hint}")


# --- the run -----------------------------------------------------------------------------------


def locust_command(args: argparse.Namespace, prefix: Path) -> list[str]:
    return [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE),
        "--headless", "--only-summary",
        "-u", str(args.users), "-r", f"{args.spawn_rate:g}", "-t", f"{args.seconds}s",
        "--host", args.host,
        "--csv", str(prefix), "--csv-full-history", "--html", f"{prefix}.html",
        "--json-file", str(prefix),  # locust's final stats as JSON (and no repeated tables)
        "--exit-code-on-error", "0", "--stop-timeout", "2",
    ]  # fmt: skip


def locust_env(args: argparse.Namespace) -> dict[str, str]:
    return {
        **os.environ,
        "LOAD_EMAIL": args.email,
        "LOAD_PASSWORD": args.password,
        "LOAD_ISSUER_KEY": str(Path(args.issuer_key).resolve()),
        "LOAD_ISSUER": args.issuer,
        "LOAD_KID": args.kid,
        "LOAD_TENANT_ID": args.tenant_id,
        "LOAD_RPS": str(args.rps),
        "LOAD_WEBHOOK_URL": args.webhook_url,
        "PYTHONUNBUFFERED": "1",
    }


def _number(value: str | None) -> float:
    try:
        return float(value) if value not in (None, "", "N/A") else math.nan
    except ValueError:
        return math.nan


def read_history(path: Path) -> list[dict[str, str]]:
    """The Aggregated rows of locust's stats history (a partly written last line is skipped)."""
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [row for row in rows if row.get("Name") == TOTAL and row.get("99%") is not None]


def progress_line(history: list[dict[str, str]], args: argparse.Namespace) -> str | None:
    if len(history) < 2:
        return None
    first, previous, last = history[0], history[-min(len(history), 6)], history[-1]
    elapsed = _number(last["Timestamp"]) - _number(first["Timestamp"])
    span = _number(last["Timestamp"]) - _number(previous["Timestamp"]) or 1.0
    rate = (_number(last["Total Request Count"]) - _number(previous["Total Request Count"])) / span
    fails = (_number(last["Total Failure Count"]) - _number(previous["Total Failure Count"])) / span
    target = f"{args.rps:g}" if args.rps else "unpaced"
    return (
        f"[{elapsed:4.0f}s/{args.seconds}s] users {last['User Count']:>3}  "
        f"req/s {rate:6.1f} (target {target})  fail/s {fails:5.1f}  "
        f"p50 {last['50%']} ms  p95 {last['95%']} ms  p99 {last['99%']} ms  "
        f"requests {last['Total Request Count']}  failures {last['Total Failure Count']}"
    )


LOGINS_PER_MINUTE_PER_ACCOUNT = 20  # the api's default API_RATE_LIMIT_LOGIN_ACCOUNT_PER_MINUTE


def warnings(args: argparse.Namespace) -> list[str]:
    notes = []
    if args.users > LOGINS_PER_MINUTE_PER_ACCOUNT - 1:
        notes.append(
            f"{args.users} users log in with one account; the api allows "
            f"{LOGINS_PER_MINUTE_PER_ACCOUNT} logins a minute per account by default "
            "(API_RATE_LIMIT_LOGIN_ACCOUNT_PER_MINUTE): expect HTTP 429 on login at the start"
        )
    if args.rps and args.rps / args.users > 20:
        notes.append(
            f"each user must send {args.rps / args.users:.0f} req/s, one at a time: the target "
            "is only reachable with answers under "
            f"{1000 * args.users / args.rps:.0f} ms; add users (--users)"
        )
    return notes


def run_locust(args: argparse.Namespace, run_dir: Path) -> int:
    prefix = run_dir / CSV_PREFIX
    print(
        f"load: {args.users} users, target {args.rps:g} req/s, {args.seconds} s against "
        f"{args.host}; results in {run_dir}",
        flush=True,
    )
    for note in warnings(args):
        print(f"load: note: {note}", flush=True)
    process = subprocess.Popen(locust_command(args, prefix), cwd=ROOT, env=locust_env(args))
    history_path = Path(f"{prefix}_stats_history.csv")
    deadline = time.monotonic() + args.seconds + 120
    next_progress = time.monotonic() + args.progress_seconds
    try:
        while process.poll() is None:
            if time.monotonic() > deadline:
                print("load: locust did not stop in time; terminating it", file=sys.stderr)
                process.terminate()
                break
            time.sleep(0.2)
            if time.monotonic() >= next_progress:
                next_progress += args.progress_seconds
                line = progress_line(read_history(history_path), args)
                if line:
                    print(line, flush=True)
    except KeyboardInterrupt:
        print("\nload: interrupted; locust stops, then the report of what ran is written")
        try:  # Ctrl-C reached locust too; a signal sent to this process alone did not
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGINT)
    return process.wait()


# --- the report --------------------------------------------------------------------------------


@dataclass
class RequestStats:
    method: str
    name: str
    count: int
    failures: int
    rps: float
    p50: float
    p95: float
    p99: float
    max: float

    @property
    def label(self) -> str:
        return f"{self.method} {self.name}".strip() if self.name != TOTAL else "Total"


@dataclass
class Report:
    rows: list[RequestStats]
    total: RequestStats
    causes: list[tuple[str, int, list[str]]]  # cause, occurrences, request labels
    failures: list[tuple[str, str, int]]  # request label, cause, occurrences
    exceptions: list[tuple[int, str]]  # locust user-code errors: count, message
    steady_rps: float = math.nan  # achieved once every user had started
    steady_seconds: float = 0.0
    seconds: list[float] = field(default_factory=list)
    achieved: list[float] = field(default_factory=list)
    failed: list[float] = field(default_factory=list)
    users: list[float] = field(default_factory=list)
    p50: list[float] = field(default_factory=list)
    p95: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)


_CATCH = re.compile(r"^CatchResponseError\((['\"])(.*)\1\)$")


def clean_cause(error: str) -> str:
    """locust wraps the locustfile's failure messages in CatchResponseError('...')."""
    match = _CATCH.match(error.strip())
    return match.group(2) if match else error.strip()


def _read(prefix: Path, kind: str) -> list[dict[str, str]]:
    """locust's <prefix>_<kind>.csv, or the final numbers the locustfile wrote at the end."""
    final = Path(f"{prefix}_final_{kind}.csv")
    path = final if final.exists() else Path(f"{prefix}_{kind}.csv")
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _request_stats(prefix: Path) -> list[RequestStats]:
    return [
        RequestStats(
            method=row["Type"],
            name=row["Name"],
            count=int(row["Request Count"]),
            failures=int(row["Failure Count"]),
            rps=_number(row["Requests/s"]),
            p50=_number(row["50%"]),
            p95=_number(row["95%"]),
            p99=_number(row["99%"]),
            max=_number(row["Max Response Time"]),
        )
        for row in _read(prefix, "stats")
    ]


def _failures(
    prefix: Path,
) -> tuple[list[tuple[str, int, list[str]]], list[tuple[str, str, int]]]:
    """(each cause with its occurrences and requests; each request's failures), most first."""
    by_cause: Counter[str] = Counter()
    names: defaultdict[str, set[str]] = defaultdict(set)
    failures = []
    for row in _read(prefix, "failures"):
        label, reason = f"{row['Method']} {row['Name']}", clean_cause(row["Error"])
        count = int(row["Occurrences"])
        by_cause[reason] += count
        names[reason].add(label)
        failures.append((label, reason, count))
    causes = [(reason, count, sorted(names[reason])) for reason, count in by_cause.most_common()]
    return causes, sorted(failures, key=lambda f: -f[2])


def _add_history(report: Report, history: list[dict[str, str]]) -> None:
    """The time series of the report: rates over a trailing window, users, percentiles."""
    start = _number(history[0]["Timestamp"])
    times: list[float] = []
    counts: list[tuple[float, float]] = []
    for row in history:
        t = _number(row["Timestamp"]) - start
        n, f = _number(row["Total Request Count"]), _number(row["Total Failure Count"])
        times.append(t)
        counts.append((n, f))
        # Rates over a trailing window: locust stamps samples with whole seconds and writes
        # them about once a second, so sample-to-sample differences jitter between 0 and 2x.
        first = next(i for i, then in enumerate(times) if then >= t - ROLLING_SECONDS)
        first = min(first, len(times) - 2) if len(times) > 1 else 0
        span = t - times[first]
        report.seconds.append(t)
        report.achieved.append((n - counts[first][0]) / span if span > 0 else math.nan)
        report.failed.append((f - counts[first][1]) / span if span > 0 else math.nan)
        report.users.append(_number(row["User Count"]))
        seen = _number(row["99%"]) > 0  # 0, not N/A, while locust's window holds no answer
        report.p50.append(_number(row["50%"]) if seen else math.nan)
        report.p95.append(_number(row["95%"]) if seen else math.nan)
        report.p99.append(_number(row["99%"]) if seen else math.nan)


def build_report(run_dir: Path) -> Report:
    prefix = run_dir / CSV_PREFIX
    stats = _request_stats(prefix)
    totals = [row for row in stats if row.name == TOTAL]
    if not totals:
        raise SystemExit(f"load: no locust statistics in {run_dir}")
    rows = sorted((row for row in stats if row.name != TOTAL), key=lambda r: -r.count)
    causes, failures = _failures(prefix)
    exceptions = [(int(row["Count"]), row["Message"]) for row in _read(prefix, "exceptions")]
    report = Report(rows, totals[0], causes, failures, exceptions)

    history = read_history(Path(f"{prefix}_stats_history.csv"))
    totals_path = Path(f"{prefix}_final_totals.json")
    steady_state(
        report, history, json.loads(totals_path.read_text()) if totals_path.exists() else {}
    )
    if history:
        _add_history(report, history)
    return report


def steady_state(report: Report, history: list[dict[str, str]], totals: dict[str, float]) -> None:
    """The achieved rate from the first sample with every user started to the end of the run
    (the last request, from the locustfile's final totals; else the last sample)."""
    if not history:
        return
    peak = max(_number(row["User Count"]) for row in history)
    start = next(row for row in history if _number(row["User Count"]) >= peak)
    end_time = _number(history[-1]["Timestamp"])
    end_count = _number(history[-1]["Total Request Count"])
    if totals.get("last_request_timestamp"):
        end_time, end_count = totals["last_request_timestamp"], totals["requests"]
    span = end_time - _number(start["Timestamp"])
    if span >= 2:
        count = end_count - _number(start["Total Request Count"])
        report.steady_rps, report.steady_seconds = count / span, span


def plot(report: Report, target: float, run_dir: Path) -> None:
    import matplotlib  # noqa: PLC0415 - only the report needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    figure, axis = plt.subplots(figsize=(10, 4.8), dpi=100)
    if report.seconds:
        window = f"(trailing {ROLLING_SECONDS} s)"
        axis.plot(report.seconds, report.achieved, color="tab:blue", linewidth=2,
                  label=f"achieved req/s {window}")  # fmt: skip
        axis.plot(report.seconds, report.failed, color="tab:red", linewidth=1.5,
                  label=f"failures/s {window}")  # fmt: skip
        if target > 0:
            axis.axhline(target, color="black", linestyle="--", linewidth=1,
                         label=f"target {target:g} req/s")  # fmt: skip
        users = axis.twinx()
        users.step(report.seconds, report.users, where="post", color="tab:gray", alpha=0.6,
                   linewidth=1, linestyle=":", label="users (right axis)")  # fmt: skip
        users.set_ylabel("users", color="tab:gray")
        users.set_ylim(bottom=0, top=max([*report.users, 1]) * 1.6)
        handles, labels = axis.get_legend_handles_labels()
        extra_handles, extra_labels = users.get_legend_handles_labels()
        axis.legend(handles + extra_handles, labels + extra_labels, loc="upper left",
                    fontsize="small", ncol=2)  # fmt: skip
    else:
        axis.text(0.5, 0.5, "no samples", ha="center", va="center", transform=axis.transAxes)
    axis.set_xlabel("seconds since start")
    axis.set_ylabel("requests per second")
    axis.set_title("Throughput: achieved vs target")
    axis.grid(alpha=0.3)
    highest = max([target, 1.0, *(v for v in report.achieved if not math.isnan(v))])
    axis.set_ylim(bottom=0, top=highest * 1.4)
    figure.tight_layout()
    figure.savefig(run_dir / "throughput.png")
    plt.close(figure)

    figure, axis = plt.subplots(figsize=(10, 4.8), dpi=100)
    if report.seconds:
        for values, label, color in (
            (report.p50, "p50", "tab:green"),
            (report.p95, "p95", "tab:orange"),
            (report.p99, "p99", "tab:red"),
        ):
            axis.plot(report.seconds, values, label=label, color=color, linewidth=1.8)
    else:
        axis.text(0.5, 0.5, "no samples", ha="center", va="center", transform=axis.transAxes)
    axis.set_xlabel("seconds since start")
    axis.set_ylabel("latency, ms")
    axis.set_ylim(bottom=0)
    axis.set_title("Latency percentiles, all requests (locust's rolling 10 s window)")
    axis.grid(alpha=0.3)
    axis.legend(loc="upper left", fontsize="small")
    figure.tight_layout()
    figure.savefig(run_dir / "latency.png")
    plt.close(figure)


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:,.0f}"


def summary_table(report: Report) -> list[str]:
    lines = [
        "| request | count | failures | req/s | p50 ms | p95 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in [*report.rows, report.total]:
        label = f"**{row.label}**" if row is report.total else f"`{row.label}`"
        lines.append(
            f"| {label} | {row.count:,} | {row.failures:,} | {row.rps:,.1f} | {_ms(row.p50)} "
            f"| {_ms(row.p95)} | {_ms(row.p99)} | {_ms(row.max)} |"
        )
    return lines


def rate_line(report: Report, target: float) -> str:
    achieved, steady = report.total.rps, report.steady_rps
    versus = f" ({achieved / target:.0%} of target)" if target > 0 else ""
    line = f"Achieved **{achieved:,.1f} req/s** over the whole run{versus}"
    if not math.isnan(steady):
        versus = f" ({steady / target:.0%})" if target > 0 else ""
        line += (
            f", **{steady:,.1f} req/s** once every user had started{versus} "
            f"(last {report.steady_seconds:.0f} s)"
        )
    goal = f"target **{target:g} req/s**" if target > 0 else "unpaced: no target rate"
    return f"{line}; {goal}."


def _head_lines(report: Report, meta: dict[str, Any], target: float, run_dir: Path) -> list[str]:
    """The run's settings, achieved vs target, and the summary table with its charts."""
    total = report.total
    share = total.failures / total.count if total.count else 0.0
    return [
        f"# Load run {meta.get('started', run_dir.name)}",
        "",
        f"- host: `{meta.get('host', '?')}`",
        f"- users: {meta.get('users', '?')} (spawn rate {meta.get('spawn_rate', '?')}/s), "
        f"duration {meta.get('seconds', '?')} s, target {target:g} req/s"
        + (" (unpaced)" if not target else ""),
        f"- tenant admin: `{meta.get('email', '?')}`; issuer `{meta.get('issuer', '?')}`",
        f"- locust {meta.get('locust', '?')}, mix and pacing: `load/locustfile.py`",
        "",
        "## Achieved vs target",
        "",
        rate_line(report, target),
        f"{total.count:,} requests, {total.failures:,} failed ({share:.1%}).",
        "",
        "![throughput](throughput.png)",
        "",
        "## Summary",
        "",
        *summary_table(report),
        "",
        "Percentiles are locust's (histogram buckets: two significant digits); req/s is over "
        "the whole run.",
        "",
        "![latency](latency.png)",
        "",
    ]


def _error_lines(report: Report) -> list[str]:
    """Errors by cause and per request, and the locustfile's own errors."""
    lines = ["## Errors by cause", ""]
    if report.causes:
        lines += ["| cause | count | share of requests | requests |", "|---|---:|---:|---|"]
        for reason, count, labels in report.causes:
            where = ", ".join(f"`{label}`" for label in labels)
            lines.append(f"| {reason} | {count:,} | {count / report.total.count:.1%} | {where} |")
        lines += ["", "| request | cause | count |", "|---|---|---:|"]
        lines += [
            f"| `{label}` | {reason} | {count:,} |" for label, reason, count in report.failures
        ]
    else:
        lines.append("No request failed.")
    if report.exceptions:
        lines += ["", "## Errors in the locustfile", "", "| count | message |", "|---:|---|"]
        lines += [f"| {count} | {message} |" for count, message in report.exceptions]
    return lines


def _summary(report: Report, meta: dict[str, Any]) -> dict[str, Any]:
    """summary.json: the run's settings, and the figures per request."""
    return {
        **meta,
        "achieved_rps": report.total.rps,
        "requests": {
            row.label: {
                "count": row.count,
                "failures": row.failures,
                "rps": row.rps,
                "p50_ms": row.p50,
                "p95_ms": row.p95,
                "p99_ms": row.p99,
                "max_ms": row.max,
            }
            for row in [*report.rows, report.total]
        },
        "errors_by_cause": {reason: count for reason, count, _ in report.causes},
    }


def write_report(report: Report, meta: dict[str, Any], run_dir: Path) -> Path:
    target = float(meta.get("target_rps") or 0)
    plot(report, target, run_dir)
    lines = [
        *_head_lines(report, meta, target, run_dir),
        *_error_lines(report),
        "",
        "Raw data: locust's `locust_stats_history.csv`, `locust_final_stats.csv`, "
        "`locust_final_failures.csv`, `locust.json` and `locust.html`.",
        "",
    ]
    path = run_dir / "report.md"
    path.write_text("\n".join(lines))
    summary = _summary(report, meta)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return path


def print_summary(report: Report, target: float, path: Path) -> None:
    print()
    print("\n".join(summary_table(report)))
    print()
    print(rate_line(report, target).replace("**", ""))
    for reason, count, _ in report.causes:
        print(f"  {count:>7,}  {reason}")
    try:
        shown = path.relative_to(Path.cwd())
    except ValueError:
        shown = path
    print(f"\nload: report {shown} (plots throughput.png, latency.png beside it)")


def _locust_version() -> str:
    from importlib.metadata import version  # noqa: PLC0415

    return version("locust")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report_only is not None:
        run_dir = args.report_only
        meta_path = run_dir / "summary.json"
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        report = build_report(run_dir)
        print_summary(
            report, float(meta.get("target_rps") or 0), write_report(report, meta, run_dir)
        )
        return 0
    if not Path(args.issuer_key).is_file():
        sys.exit(
            f"load: issuer key {args.issuer_key} not found: start `make run` once (it creates "
            "the demo issuer's key) or pass --issuer-key"
        )
    check_reachable(args.host)
    bootstrapped = not (args.email and args.password)
    if bootstrapped:
        if args.email or args.password:
            sys.exit("load: pass both --email and LOAD_PASSWORD, or neither (bootstrap a tenant)")
        _, args.email, args.password = bootstrap_tenant(args.issuer)
    check_login(args.host, args.email, args.password, bootstrapped)

    started = datetime.now(UTC)
    run_dir = args.out_dir / f"load-{started.strftime('%Y%m%d-%H%M%S')}"
    run_dir.mkdir(parents=True, exist_ok=False)
    code = run_locust(args, run_dir)
    if code not in (0, 1):  # 1: locust saw failures, which the report shows
        print(f"load: locust exited with {code}", file=sys.stderr)
    meta = {
        "started": started.isoformat(timespec="seconds"),
        "host": args.host,
        "users": args.users,
        "spawn_rate": round(args.spawn_rate, 2),
        "seconds": args.seconds,
        "target_rps": args.rps,
        "email": args.email,
        "issuer": args.issuer,
        "locust": _locust_version(),
        "locust_exit_code": code,
    }
    report = build_report(run_dir)
    print_summary(report, args.rps, write_report(report, meta, run_dir))
    return 0 if code in (0, 1) and report.total.count > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
