"""Rate limits per tenant, per API key, and on login per account and per client address.

The api runs with small limits (API_RATE_LIMIT_TENANT_PER_SECOND=5, ..._API_KEY_PER_SECOND=1,
..._LOGIN_ACCOUNT_PER_MINUTE=3, ..._LOGIN_CLIENT_PER_MINUTE=5; buckets allow a burst of two
seconds' worth). Bursts beyond each limit must be answered 429 with `Retry-After` (a whole
number of seconds >= 1) in the shared error shape, counted in `rate_limited_total{scope}`, and
must not spill over: another key of the same tenant, another tenant, another account and another
client address keep being served. Client addresses are told apart by `X-Forwarded-For`, which
uvicorn trusts from 127.0.0.1 (the proxy address in this setup). After the `Retry-After` the
refused key is served again.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from mandate_vault_api.roles import Role
from mandate_vault_harness.metrics import scrape, value
from mandate_vault_harness.system import PASSWORD, System, Tenant
from reliability.core import Findings, Row, Scale

NAME = "rate limits"
LIMITS: dict[str, Any] = {
    "API_RATE_LIMIT_TENANT_PER_SECOND": "5",
    "API_RATE_LIMIT_API_KEY_PER_SECOND": "1",
    "API_RATE_LIMIT_LOGIN_ACCOUNT_PER_MINUTE": "3",
    "API_RATE_LIMIT_LOGIN_CLIENT_PER_MINUTE": "5",
}


def _burst(
    client: httpx.Client, n: int, method: str, path: str, **kwargs: object
) -> list[httpx.Response]:
    return [client.request(method, path, **kwargs) for _ in range(n)]  # type: ignore[arg-type]


def _clear_429(responses: list[httpx.Response]) -> bool:
    refused = [r for r in responses if r.status_code == 429]
    return bool(refused) and all(
        r.headers.get("Retry-After", "").isdigit()
        and int(r.headers["Retry-After"]) >= 1
        and r.json().get("error") == "rate_limited"
        for r in refused
    )


def _codes(responses: list[httpx.Response]) -> list[int]:
    return [r.status_code for r in responses]


def _login(
    client: httpx.Client, email: str, address: str, password: str = PASSWORD
) -> httpx.Response:
    return client.post(
        "/api/v1/auth/login",
        json={"email": email, "password": password},
        headers={"X-Forwarded-For": address},
    )


def _per_api_key(
    client: httpx.Client, keyed: Tenant, findings: Findings
) -> tuple[dict[str, object], list[httpx.Response]]:
    """1/s, burst 2: a burst of 5 on one key, while another key of the tenant is served."""
    key_burst = _burst(client, 5, "GET", "/api/v1/mandates", headers=keyed.headers(Role.MEMBER))
    sibling = client.get("/api/v1/mandates", headers=keyed.headers(Role.READONLY))
    findings.check(
        _codes(key_burst)[:2] == [200, 200] and _clear_429(key_burst),
        f"API key burst: {_codes(key_burst)}",
    )
    findings.check(sibling.status_code == 200, f"another key of the tenant: {sibling.status_code}")
    figures: dict[str, object] = {
        "burst_of_5": _codes(key_burst),
        "same_tenant_other_key": sibling.status_code,
    }
    return figures, key_burst


def _per_tenant(
    client: httpx.Client, users: Tenant, other: Tenant, findings: Findings
) -> tuple[dict[str, object], list[httpx.Response]]:
    """5/s, burst 10, with a bearer token (no key limit), while another tenant is served."""
    bearer = _login(client, users.emails[Role.TENANT_ADMIN], "198.51.100.1").json()
    auth = {"Authorization": f"Bearer {bearer['access_token']}"}
    tenant_burst = _burst(client, 16, "GET", "/api/v1/mandates", headers=auth)
    elsewhere = client.get("/api/v1/mandates", headers=other.headers(Role.MEMBER))
    findings.check(
        _codes(tenant_burst)[:8] == [200] * 8 and _clear_429(tenant_burst),
        f"tenant burst: {_codes(tenant_burst)}",
    )
    findings.check(elsewhere.status_code == 200, f"another tenant: {elsewhere.status_code}")
    figures: dict[str, object] = {
        "burst_of_16": _codes(tenant_burst),
        "other_tenant": elsewhere.status_code,
    }
    return figures, tenant_burst


def _login_per_account(
    client: httpx.Client, users: Tenant, findings: Findings
) -> tuple[dict[str, object], list[httpx.Response]]:
    """3/min, from a new address each time, while another account logs in."""
    member = users.emails[Role.MEMBER]
    account = [_login(client, member, f"198.51.100.{10 + n}") for n in range(5)]
    another_account = _login(client, users.emails[Role.TENANT_ADMIN], "198.51.100.30")
    findings.check(
        _codes(account)[:3] == [200] * 3 and _clear_429(account),
        f"login per account: {_codes(account)}",
    )
    findings.check(
        another_account.status_code == 200, f"another account: {another_account.status_code}"
    )
    figures: dict[str, object] = {
        "5_logins_one_account": _codes(account),
        "another_account": another_account.status_code,
    }
    return figures, account


def _login_per_client(
    client: httpx.Client, findings: Findings
) -> tuple[dict[str, object], list[httpx.Response]]:
    """5/min, a new (unknown) account each time, while another address is answered."""
    client_burst = [
        _login(client, f"nobody{n}@example.com", "203.0.113.7", "wrong-pass") for n in range(7)
    ]
    another_client = _login(client, "nobody-else@example.com", "203.0.113.8", "wrong-pass")
    findings.check(
        _codes(client_burst)[:5] == [401] * 5 and _clear_429(client_burst),
        f"login per client: {_codes(client_burst)}",
    )
    findings.check(
        another_client.status_code == 401, f"another address: {another_client.status_code}"
    )
    figures: dict[str, object] = {
        "7_logins_one_address": _codes(client_burst),
        "another_address": another_client.status_code,
    }
    return figures, client_burst


def _after_retry_after(
    client: httpx.Client, keyed: Tenant, key_burst: list[httpx.Response], findings: Findings
) -> dict[str, object]:
    """After the Retry-After of the refused key, the key is served again."""
    wait = max(int(r.headers["Retry-After"]) for r in key_burst if r.status_code == 429)
    time.sleep(wait + 0.2)
    again = client.get("/api/v1/mandates", headers=keyed.headers(Role.MEMBER))
    findings.check(again.status_code == 200, f"after Retry-After: {again.status_code}")
    return {"waited_s": wait, "status": again.status_code}


def _counted(api_url: str, findings: Findings) -> dict[str, float]:
    """rate_limited_total per scope: every scope refused something."""
    samples = scrape(api_url)
    counted = {
        scope: value(samples, "rate_limited_total", scope=scope)
        for scope in ("api_key", "tenant", "login_account", "login_client")
    }
    for scope, count in counted.items():
        findings.check(count > 0, f"rate_limited_total{{scope={scope}}} is {count}")
    return counted


def run(scale: Scale) -> Row:
    del scale  # limits are per second and per minute: the same small run in both modes
    findings = Findings()
    figures: dict[str, object] = {"limits": LIMITS}
    with System(verifier=False, broker=False) as system:
        api = system.start_api(API_VERIFIER_URL="http://127.0.0.1:9", **LIMITS)
        keyed: Tenant = system.add_tenant(roles=(Role.MEMBER, Role.READONLY))
        users: Tenant = system.add_tenant(roles=(Role.MEMBER, Role.TENANT_ADMIN), users=True)
        other: Tenant = system.add_tenant(roles=(Role.MEMBER,))
        with httpx.Client(base_url=api.url, timeout=10) as client:
            figures["api_key"], key_burst = _per_api_key(client, keyed, findings)
            figures["tenant"], tenant_burst = _per_tenant(client, users, other, findings)
            figures["login_account"], account = _login_per_account(client, users, findings)
            figures["login_client"], client_burst = _login_per_client(client, findings)
            figures["api_key_after_retry_after"] = _after_retry_after(
                client, keyed, key_burst, findings
            )
        figures["rate_limited_total"] = _counted(api.url, findings)
        server_errors = [
            r for r in [*key_burst, *tenant_burst, *account, *client_burst] if r.status_code >= 500
        ]
        findings.check(not server_errors, f"{len(server_errors)} server errors")
    tried = (
        "bursts over the per-key (1/s), per-tenant (5/s), per-account (3/min) and per-address "
        "(5/min) limits, with neighbours that must stay unaffected"
    )
    leaked = (
        "every excess answered 429 + Retry-After, neighbours served, counted per scope"
        if findings.ok
        else "see problems"
    )
    return findings.row(NAME, tried, leaked, figures)
