"""Rate limits shared through Redis by several api processes, and what happens without Redis.

Each test runs two real api processes on one PostgreSQL database and its own redis-server.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from mandate_vault_harness.metrics import scrape, value
from mandate_vault_harness.redis import RedisServer
from mandate_vault_harness.services import ServiceProcess
from mandate_vault_harness.system import System

# A limit of 2/s per tenant is a sliding window of 4 requests per 2 seconds.
TENANT_RATE = "2"
WINDOW = 4


@pytest.fixture
def system() -> Iterator[System]:
    with System(verifier=False, broker=False) as instance:
        yield instance


def start_apis(system: System, redis: RedisServer, **env: str) -> list[ServiceProcess]:
    settings = {
        "API_VERIFIER_URL": "http://127.0.0.1:9",
        "API_REDIS_URL": redis.url,
        "API_RATE_LIMIT_TENANT_PER_SECOND": TENANT_RATE,
        **env,
    }
    apis = [system.start_api(wait=False, **settings) for _ in range(2)]
    system.ready()
    return apis


def statuses(apis: list[ServiceProcess], headers: dict[str, str], n: int) -> list[int]:
    """`n` requests spread round-robin over the replicas, sent together so that they all fall
    in one 2-second window even on a busy machine."""

    def one(i: int) -> int:
        url = f"{apis[i % len(apis)].url}/api/v1/mandates"
        return httpx.get(url, headers=headers, timeout=10).status_code

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(n)))


def test_two_api_processes_share_a_tenants_limit(system: System, redis_server: RedisServer) -> None:
    apis = start_apis(system, redis_server)
    tenant = system.add_tenant()
    answers = statuses(apis, tenant.headers(), 4 * WINDOW)
    # Per process each replica would admit a window's worth: 2 x 4. Shared: one window (a
    # window that rolls over during the run may admit one more).
    assert WINDOW <= answers.count(200) <= WINDOW + 1, answers
    assert set(answers) == {200, 429}
    refused = httpx.get(f"{apis[1].url}/api/v1/mandates", headers=tenant.headers())
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1
    other = system.add_tenant()  # another tenant has its own window
    assert statuses(apis, other.headers(), 2) == [200, 200]


def test_redis_stopped_limits_fall_back_per_process_and_recover(
    system: System, redis_server: RedisServer
) -> None:
    apis = start_apis(system, redis_server, API_RATE_LIMIT_LOGIN_ACCOUNT_PER_MINUTE="3")
    tenant = system.add_tenant()
    assert statuses(apis, tenant.headers(), 2) == [200, 200]

    redis_server.stop()
    # Nothing fails: every replica limits on its own (a burst each, refilling at the rate),
    # and says so - more than one shared window admits, but never everything.
    answers = statuses(apis, tenant.headers(), 6 * WINDOW)
    assert set(answers) == {200, 429}, answers
    assert answers.count(200) > WINDOW + 1, answers
    for api in apis:
        ready = httpx.get(f"{api.url}/readyz").json()
        assert ready["status"] == "ready"
        assert "Redis unreachable" in ready["degraded"]["redis"]
        assert value(scrape(api.url), "rate_limit_fallback_total", scope="tenant") > 0
        assert api.running
    # Login never becomes unlimited: 3 per minute per account on each replica.
    body = {"email": "nobody@example.com", "password": "wrong-password-123"}
    login = [httpx.post(f"{apis[0].url}/api/v1/auth/login", json=body) for _ in range(5)]
    assert [r.status_code for r in login][-1] == 429

    # Redis back on its port: the replicas share one window again.
    redis_server.start()
    until_shared_again(apis, system.add_tenant().headers())
    answers = statuses(apis, system.add_tenant().headers(), 4 * WINDOW)
    assert WINDOW <= answers.count(200) <= WINDOW + 1, answers


def until_shared_again(apis: list[ServiceProcess], headers: dict[str, str]) -> None:
    """Until a request on each replica is decided by Redis, not by the fallback (which lasts a
    second after the last failed check)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        shared = 0
        for api in apis:
            before = value(scrape(api.url), "rate_limit_fallback_total", scope="tenant")
            httpx.get(f"{api.url}/api/v1/mandates", headers=headers)
            shared += before == value(scrape(api.url), "rate_limit_fallback_total", scope="tenant")
        if shared == len(apis):
            return
        time.sleep(0.2)
    msg = "the replicas did not use Redis again"
    raise AssertionError(msg)
