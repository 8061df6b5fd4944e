"""A realistic mix against the Mandate Vault api (`make load` runs it; see load/README.md).

Each simulated user is one tenant client. It logs in, reuses its access token, refreshes it
shortly before it expires (logging in again when the refresh fails or a request answers 401),
ends its session after a few minutes (log out, log in: a client restart), and meanwhile, by
weight:

    create a valid mandate (minted and signed here by the demo issuer)  30
    read one mandate by id                                               28
    list mandates (plain, filtered, following the cursor)                25
    submit an invalid mandate: signature tampered / expired               4 / 4
    manage a webhook subscription: create, get, patch, rotate, delete     1

Before following the weights every user walks through each operation once (and one token
refresh), so every report lists those request names.

Every failure is reported under a stable cause ("HTTP 429 rate_limited", "HTTP 503
service_unavailable", "connection: ConnectionRefusedError", "tampered mandate answered
ACTIVE/VALID", ...) so the report groups failures by cause. A 429 (rate limits: logins per
account and per client address, calls per tenant) is a failure like any other; a user refused
a login waits for its Retry-After before trying again.

Pacing: `--target-rps` (total requests/s over all users, 0 = unpaced). Each user waits so that
its own requests per second equal target / users; this is locust's `constant_throughput`
counted per request rather than per task (a webhook lifecycle is five requests). A user
never has more than one request in flight, so a slow server lowers the achieved rate: the
report shows achieved against target.

Options (each also read from the environment variable shown):
    --email / --password   LOAD_EMAIL / LOAD_PASSWORD   an admin of a tenant trusting --issuer
    --issuer-key           LOAD_ISSUER_KEY              PEM key (default var/demo-issuer-key.pem)
    --issuer / --kid       LOAD_ISSUER / LOAD_KID       the key's issuer DID and key id
    --tenant-id            LOAD_TENANT_ID               X-Tenant-ID header (platform admins only)
    --target-rps           LOAD_RPS                     total target rate, requests/s
    --webhook-url          LOAD_WEBHOOK_URL             URL the subscriptions point at
"""

from __future__ import annotations

import base64
import contextlib
import csv
import json
import random
import time
import uuid
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from locust import FastHttpUser, events, task
from locust import stats as locust_stats
from locust.exception import RescheduleTask, StopUser

from mandate_vault_harness.issuer import DEMO_ISSUER, DEMO_KID, Issuer, demo_key_file

MANDATES = "/api/v1/mandates"
WEBHOOKS = "/api/v1/webhooks"
SUBJECTS = [f"did:example:customer-{n}" for n in range(1, 501)]
SCOPES = ["payments.recurring", "payments.one-off", "payments.subscription"]
CURRENCIES = ["EUR", "EUR", "EUR", "USD", "GBP"]
PAGE_SIZES = [10, 20, 50]
rng = random.Random()  # noqa: S311 - picks a load mix, not secrets
REMEMBERED_IDS = 500  # mandate ids a user keeps to read back
EXPECTED = {  # (status, verification_status) each kind of mandate must be stored with
    "valid": ("ACTIVE", "VALID"),
    "tampered": ("REJECTED", "SIG_INVALID"),
    "expired": ("REJECTED", "EXPIRED"),
}
REFRESH_MARGIN = 0.2  # refresh when this share of the token's lifetime is left (at most 60 s)
SESSION_SECONDS = (120.0, 480.0)  # a client logs out and in again after this long
LOGIN_BACKOFF_SECONDS = (1.0, 30.0)  # wait after a refused login (Retry-After, within these)


# Flush the --csv files every second (locust's default is 5 s): scripts/load.py's progress
# lines read the stats history while the run goes on.
locust_stats.CSV_STATS_FLUSH_INTERVAL_SEC = 1


@events.test_stop.add_listener
def _write_final_csv(environment: Any, **_: Any) -> None:
    """The --csv files are a snapshot up to a second old when locust stops; write the final
    numbers beside them: <prefix>_final_stats.csv, _final_failures.csv, _final_exceptions.csv
    and _final_totals.json (when the run started and its last request ended, epoch seconds).
    Here, at test_stop: by the time of `quit`, --json-file has reset the entries."""
    options = getattr(environment, "parsed_options", None)
    prefix = getattr(options, "csv_prefix", None)
    if not prefix:
        return
    writer = locust_stats.StatsCSV(environment, locust_stats.PERCENTILES_TO_REPORT)
    for suffix, write in (
        ("stats", writer.requests_csv),
        ("failures", writer.failures_csv),
        ("exceptions", writer.exceptions_csv),
    ):
        with Path(f"{prefix}_final_{suffix}.csv").open("w", newline="") as handle:
            write(csv.writer(handle))
    total = environment.stats.total
    totals = {
        "start_time": total.start_time,
        "last_request_timestamp": total.last_request_timestamp,
        "requests": total.num_requests,
        "failures": total.num_failures,
    }
    Path(f"{prefix}_final_totals.json").write_text(json.dumps(totals) + "\n")


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    group = parser  # options of this mix; is_secret only works on the parser itself
    group.add_argument("--email", env_var="LOAD_EMAIL", default="", help="tenant admin e-mail")
    group.add_argument(
        "--password",
        env_var="LOAD_PASSWORD",
        default="",
        is_secret=True,
        help="its password (prefer the environment variable)",
    )
    group.add_argument(
        "--issuer-key",
        env_var="LOAD_ISSUER_KEY",
        default=str(demo_key_file()),
        help="PEM private key that signs the mandates",
    )
    group.add_argument("--issuer", env_var="LOAD_ISSUER", default=DEMO_ISSUER, help="issuer DID")
    group.add_argument(
        "--kid", env_var="LOAD_KID", default=DEMO_KID, help="key id in the JWT header"
    )
    group.add_argument(
        "--tenant-id", env_var="LOAD_TENANT_ID", default="", help="X-Tenant-ID (admins only)"
    )
    group.add_argument(
        "--target-rps",
        env_var="LOAD_RPS",
        type=float,
        default=0.0,
        help="total target requests/s over all users (0: unpaced)",
    )
    group.add_argument(
        "--webhook-url",
        env_var="LOAD_WEBHOOK_URL",
        default="http://127.0.0.1:9/mandate-vault-load",
        help="URL of the subscriptions (must pass the api's SSRF allow-list)",
    )


class Minter:
    """Signs mandate JWTs with the harness's issuer (the demo issuer's by default), the key
    loaded once; amounts, scopes, currencies and lifetimes vary like a real population's."""

    def __init__(self, key_path: str, issuer: str, kid: str) -> None:
        path = Path(key_path)
        if not path.is_file():
            msg = (
                f"issuer key {path} not found: start `make run` once (it creates the demo "
                "issuer) or pass --issuer-key"
            )
            raise SystemExit(msg)
        self.signer = Issuer.from_pem_file(path, issuer, kid)

    def mint(self, subject: str, *, issued_at: float | None = None, lifetime: int = 0) -> str:
        return self.signer.mandate(
            subject=subject,
            scope=rng.choice(SCOPES),
            amount=f"{rng.randint(5, 5000)}.{rng.randint(0, 99):02d}",
            currency=rng.choice(CURRENCIES),
            expires_in=lifetime or rng.randint(7, 365) * 86_400,
            issued_at=issued_at,
        )

    def tampered(self, subject: str) -> str:
        """A valid token whose signature has one byte flipped."""
        header, payload, signature = self.mint(subject).split(".")
        raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
        raw[len(raw) // 2] ^= 0x01
        flipped = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
        return f"{header}.{payload}.{flipped}"

    def expired(self, subject: str) -> str:
        """Issued two days ago, expired a day ago (far beyond the verifier's leeway)."""
        return self.mint(subject, issued_at=time.time() - 2 * 86_400, lifetime=86_400)


_minter: Minter | None = None


def minter(options: Any) -> Minter:
    global _minter  # noqa: PLW0603 - one key per process, loaded by the first user
    if _minter is None:
        _minter = Minter(options.issuer_key, options.issuer, options.kid)
    return _minter


def cause(response: Any) -> str:
    """A short, stable reason for a failed request: the failures table groups by it."""
    if not response.status_code:
        return f"connection: {type(response.error).__name__}"
    code = ""
    try:
        body = response.json()
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            code = body["error"]
    except (ValueError, TypeError, AttributeError):
        pass
    return f"HTTP {response.status_code} {code}".rstrip()


class TenantClient(FastHttpUser):
    """One tenant's system talking to the api."""

    # a connection per user (keep-alive), like a client process with its own pool
    concurrency = 1
    network_timeout = 30.0
    connection_timeout = 10.0

    def on_start(self) -> None:
        options = self.environment.parsed_options
        if not options.email or not options.password:
            msg = "no credentials: pass --email and LOAD_PASSWORD (scripts/load.py bootstraps)"
            raise StopUser(msg)
        self.options = options
        self.minter = minter(options)
        self.rate = options.target_rps / max(1, options.num_users or 1)
        self.access: str | None = None
        self.refresh_token: str | None = None
        self.expires_at = 0.0
        self.refresh_at = 0.0
        self.session_ends = 0.0
        self.login_not_before = 0.0
        self.ids: deque[str] = deque(maxlen=REMEMBERED_IDS)
        self.issued = 0
        self.task_started = time.monotonic()
        with contextlib.suppress(RescheduleTask):  # refused login: the tasks log in later
            self.walk_through()

    # --- pacing -------------------------------------------------------------------------------

    def wait_time(self) -> float:
        """constant_throughput per request: the requests of the last task, at the user's rate."""
        now = time.monotonic()
        wait = 0.0
        if self.rate > 0:
            wait = max(0.0, max(1, self.issued) / self.rate - (now - self.task_started))
        if self.access is None:
            wait = max(wait, self.login_not_before - now)
        self.issued = 0
        self.task_started = now + wait
        return wait

    # --- requests -----------------------------------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        name: str,
        *,
        expect: int = 200,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
        check: Callable[[Any], str | None] | None = None,
    ) -> Any:
        """One request, reported under `name`; returns its JSON body, or None if it failed.

        `check` looks at a successful answer's body and returns why it is wrong, if it is.
        """
        all_headers = dict(headers or {})
        if auth:
            all_headers.update(self.auth_headers())
        self.issued += 1
        with self.client.request(
            method, path, name=name, json=json_body, headers=all_headers, catch_response=True
        ) as response:
            if response.status_code != expect:
                if response.status_code == 401 and auth:
                    self.access = None  # the session ended: log in again before the next call
                if response.status_code == 429 and not auth:
                    self.back_off(response)
                response.failure(cause(response))
                return None
            try:
                body = response.json() if response.content else {}
            except ValueError:
                response.failure("invalid JSON in the answer")
                return None
            problem = check(body) if check is not None else None
            if problem:
                response.failure(problem)
                return None
            return body

    def back_off(self, response: Any) -> None:
        """A refused login or refresh: honour Retry-After before the next login."""
        try:
            seconds = float((response.headers or {}).get("retry-after", 0))
        except (TypeError, ValueError):
            seconds = 0.0
        low, high = LOGIN_BACKOFF_SECONDS
        self.login_not_before = time.monotonic() + min(high, max(low, seconds))

    def auth_headers(self) -> dict[str, str]:
        now = time.monotonic()
        if self.access is not None and now >= self.session_ends:
            self.end_session()
        if self.access is None:
            if now >= self.login_not_before:
                self.login()
        elif now >= self.refresh_at:
            self.refresh()
        if self.access is None:
            raise RescheduleTask  # could not log in (lockout, 429, api down): try again later
        headers = {"Authorization": f"Bearer {self.access}"}
        if self.options.tenant_id:
            headers["X-Tenant-ID"] = self.options.tenant_id
        return headers

    def remember_tokens(self, body: dict[str, Any] | None) -> None:
        if not body or "access_token" not in body:
            self.access = None
            return
        lifetime = float(body.get("expires_in", 900))
        now = time.monotonic()
        self.access, self.refresh_token = body["access_token"], body.get("refresh_token")
        self.expires_at = now + lifetime
        self.refresh_at = self.expires_at - min(60.0, lifetime * REFRESH_MARGIN)
        if now >= self.session_ends:
            self.session_ends = now + rng.uniform(*SESSION_SECONDS)

    def end_session(self) -> None:
        """Log out (the access token stops working at once); the next call logs in again."""
        self.call(
            "POST",
            "/api/v1/auth/logout",
            "/api/v1/auth/logout",
            expect=204,
            headers={"Authorization": f"Bearer {self.access}"},
            auth=False,
        )
        self.access = self.refresh_token = None

    def login(self) -> None:
        credentials = {"email": self.options.email, "password": self.options.password}
        body = self.call(
            "POST", "/api/v1/auth/login", "/api/v1/auth/login", json_body=credentials, auth=False
        )
        self.remember_tokens(body)

    def refresh(self) -> None:
        if self.refresh_token is None:
            self.login()
            return
        body = self.call(
            "POST",
            "/api/v1/auth/refresh",
            "/api/v1/auth/refresh",
            json_body={"refresh_token": self.refresh_token},
            auth=False,
        )
        self.remember_tokens(body)
        if self.access is None:
            self.login()

    # --- the mix ------------------------------------------------------------------------------

    def walk_through(self) -> None:
        """Every operation once, paced like the rest, so every report lists every name."""
        self.login()
        if self.access is None:
            return
        steps = (
            self.refresh,
            self.create_valid,
            self.create_tampered,
            self.create_expired,
            lambda: self.list_page({"limit": 1}, f"{MANDATES} [first page]", pages=2),
            self.get_one,
            self.webhook_lifecycle,
        )
        for step in steps:
            self.wait()
            step()

    @task(30)
    def create_valid(self) -> None:
        token = self.minter.mint(rng.choice(SUBJECTS))
        body = self.submit(token, "valid", {"Idempotency-Key": str(uuid.uuid4())})
        if body is not None:
            self.ids.append(body["id"])

    @task(4)
    def create_tampered(self) -> None:
        self.submit(self.minter.tampered(rng.choice(SUBJECTS)), "tampered")

    @task(4)
    def create_expired(self) -> None:
        self.submit(self.minter.expired(rng.choice(SUBJECTS)), "expired")

    def submit(
        self, token: str, kind: str, headers: dict[str, str] | None = None
    ) -> dict[str, Any] | None:
        """POST a mandate; valid ones must become ACTIVE, invalid ones REJECTED (both 201)."""
        expected = EXPECTED[kind]

        def check(body: Any) -> str | None:
            got = (body.get("status"), body.get("verification_status"))
            return None if got == expected else f"{kind} mandate answered {got[0]}/{got[1]}"

        body: dict[str, Any] | None = self.call(
            "POST",
            MANDATES,
            f"{MANDATES} [{kind}]",
            expect=201,
            json_body={"vc_jwt": token},
            headers=headers,
            check=check,
        )
        return body

    @task(25)
    def list_mandates(self) -> None:
        choice = rng.random()
        if choice < 0.4:
            self.list_page({"limit": rng.choice(PAGE_SIZES)}, f"{MANDATES} [first page]")
            return
        filters: dict[str, Any] = {"limit": rng.choice(PAGE_SIZES)}
        if choice < 0.6:
            filters["status"] = rng.choice(["ACTIVE", "ACTIVE", "REJECTED"])
        elif choice < 0.75:
            filters["subject"] = rng.choice(SUBJECTS)
        elif choice < 0.9:
            filters["issuer"] = self.options.issuer
            filters["status"] = "ACTIVE"
        else:
            since = datetime.now(UTC) - timedelta(minutes=rng.choice([1, 5, 60]))
            filters["created_after"] = since.isoformat()
        self.list_page(filters, f"{MANDATES} [filtered]", pages=rng.choice([1, 1, 2, 3]))

    def list_page(self, query: dict[str, Any], name: str, pages: int = 1) -> None:
        """A page, then up to `pages - 1` more by following next_cursor."""
        body = self.call("GET", f"{MANDATES}?{urlencode(query)}", name)
        for _ in range(pages - 1):
            if not body or not body.get("next_cursor"):
                return
            if not self.ids and body.get("items"):
                self.ids.extend(item["id"] for item in body["items"])
            page = {**query, "cursor": body["next_cursor"]}
            body = self.call("GET", f"{MANDATES}?{urlencode(page)}", f"{MANDATES} [next page]")

    @task(28)
    def get_one(self) -> None:
        if not self.ids:
            body = self.call("GET", f"{MANDATES}?limit=20", f"{MANDATES} [first page]")
            self.ids.extend(item["id"] for item in (body or {}).get("items", []))
            if not self.ids:
                return
        mandate_id = rng.choice(self.ids)

        def check(body: Any) -> str | None:
            return None if body.get("id") == mandate_id else "answered another mandate"

        self.call("GET", f"{MANDATES}/{mandate_id}", f"{MANDATES}/{{id}}", check=check)

    @task(1)
    def webhook_lifecycle(self) -> None:
        """Subscribe, read, change, rotate the secret, unsubscribe.

        The subscription asks for MandateRevoked only, which this mix never causes, so the run
        leaves no deliveries queued for an address nobody listens on.
        """
        url = f"{self.options.webhook_url.rstrip('/')}/{uuid.uuid4().hex[:12]}"
        created = self.call(
            "POST",
            WEBHOOKS,
            WEBHOOKS,
            expect=201,
            json_body={
                "url": url,
                "event_types": ["MandateRevoked"],
                "description": "mandate-vault load test",
            },
        )
        if not created or "id" not in created:
            return
        path = f"{WEBHOOKS}/{created['id']}"
        self.call("GET", path, f"{WEBHOOKS}/{{id}}")
        self.call(
            "PATCH",
            path,
            f"{WEBHOOKS}/{{id}}",
            json_body={"event_types": ["MandateRevoked", "MandateExpired"], "description": None},
        )
        self.call("POST", f"{path}/rotate-secret", f"{WEBHOOKS}/{{id}}/rotate-secret")
        self.call("DELETE", path, f"{WEBHOOKS}/{{id}}", expect=204)
