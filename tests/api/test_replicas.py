"""Database-derived gauges are right across restarts and several api replicas."""

from __future__ import annotations

import time

import httpx

from mandate_vault_harness.issuer import Issuer, truststore_json
from mandate_vault_harness.metrics import scrape, value
from mandate_vault_harness.services import ServiceProcess, cli

TENANT = "acme-corp"
EMAIL = "ops@acme.example"
PASSWORD = "bootstrap-passphrase-1"


def wait_for_total(apis: list[ServiceProcess], expected: float, timeout: float = 20) -> list[float]:
    deadline = time.monotonic() + timeout
    while True:
        reported = [value(scrape(a.url), "mandates_active", tenant_id=TENANT) for a in apis]
        if sum(reported) == expected or time.monotonic() > deadline:
            return reported
        time.sleep(0.3)


def test_one_replica_reports_mandates_active_and_another_takes_over(
    database_url: str, bank: Issuer
) -> None:
    verifier = ServiceProcess(
        "jwt-verifier", {"VERIFIER_TRUSTSTORE_JSON": truststore_json(bank)}
    ).start()
    cli(database_url, "migrate")
    cli(
        database_url,
        "bootstrap", "--tenant-id", TENANT, "--tenant-name", "A", "--admin-email", EMAIL, "--issuer", bank.did,
        env={"MV_BOOTSTRAP_PASSWORD": PASSWORD},
    )  # fmt: skip
    env = {
        "API_DATABASE_URL": database_url,
        "API_VERIFIER_URL": verifier.url,
        "API_GAUGE_REFRESH_INTERVAL_SECONDS": "0.2",
    }
    apis = [ServiceProcess("api", env).start(), ServiceProcess("api", env).start()]
    try:
        token = httpx.post(
            f"{apis[0].url}/api/v1/auth/login", json={"email": EMAIL, "password": PASSWORD}
        )
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        for n in range(4):
            created = httpx.post(
                f"{apis[n % 2].url}/api/v1/mandates",
                json={"vc_jwt": bank.mandate()},
                headers=headers,
            )
            assert created.status_code == 201
        reported = wait_for_total(apis, 4)
        assert sorted(reported) == [0, 4]  # exactly one replica reports; sum() is right

        leader = apis[reported.index(4)]
        leader.kill()  # the advisory lock goes with its connection
        survivor = apis[1 - reported.index(4)]
        assert wait_for_total([survivor], 4, timeout=30) == [4]
        restarted = ServiceProcess("api", env).start()
        apis.append(restarted)
        time.sleep(1)
        assert value(scrape(restarted.url), "mandates_active", tenant_id=TENANT) == 0
    finally:
        for api in apis:
            api.stop()
        verifier.stop()
