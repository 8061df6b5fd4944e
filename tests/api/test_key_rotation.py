"""Keys rotate without downtime across replicas: two api processes mid-rotation, real tokens,
real deliveries, and `mandate-vault keys` to finish the job.

A rotation rolls out in three steps (docs/deploy.md): add the new key second (every process can
read it), move it first (it signs / encrypts), then - after `keys reencrypt` for encryption
keys, after the access-token lifetime for signing keys - drop the old one. Between two steps
replicas run both configurations at once; that is what these tests run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import httpx
from cryptography.fernet import Fernet

from mandate_vault_api.roles import Role
from mandate_vault_harness.services import ServiceProcess
from mandate_vault_harness.system import PASSWORD, System

OLD_SIGNING = "k1:" + "old-signing-secret-".ljust(48, "1")
NEW_SIGNING = "k2:" + "new-signing-secret-".ljust(48, "2")


def token(api: ServiceProcess, email: str) -> dict[str, str]:
    answer = httpx.post(f"{api.url}/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def me(api: ServiceProcess, headers: dict[str, str]) -> int:
    return httpx.get(f"{api.url}/api/v1/auth/me", headers=headers).status_code


def test_signing_keys_rotate_while_two_replicas_disagree_on_the_newest() -> None:
    with System(verifier=False, broker=False) as system:
        env: dict[str, Any] = {"API_VERIFIER_URL": "http://127.0.0.1:9"}
        before = system.start_api(wait=False, API_TOKEN_SIGNING_KEY=OLD_SIGNING, **env)
        middle = system.start_api(
            wait=False, API_TOKEN_SIGNING_KEY=f"{OLD_SIGNING},{NEW_SIGNING}", **env
        )
        after = system.start_api(
            wait=False, API_TOKEN_SIGNING_KEY=f"{NEW_SIGNING},{OLD_SIGNING}", **env
        )
        system.ready()
        email = system.add_tenant(roles=(Role.MEMBER,), users=True).emails[Role.MEMBER]
        signed_old, signed_new = token(middle, email), token(after, email)
        # While the rollout is under way every replica with both keys takes both tokens.
        for api in (middle, after):
            assert me(api, signed_old) == 200
            assert me(api, signed_new) == 200
        # A replica not yet given the new key refuses its tokens: hence "add it second first".
        assert me(before, signed_new) == 401
        assert me(before, signed_old) == 200
        system.retire(before)
        # Last step (once old tokens have expired): the old key is gone.
        last = system.start_api(API_TOKEN_SIGNING_KEY=NEW_SIGNING, **env)
        assert me(last, signed_new) == 200
        assert me(last, signed_old) == 401


def keys_cli(system: System, keys: str, *args: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-m", "mandate_vault_api.cli", "keys", *args],
        env={
            **os.environ,
            "API_DATABASE_URL": system.database_url,
            "API_WEBHOOK_ENCRYPTION_KEY": keys,
        },
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_encryption_keys_rotate_while_replicas_and_worker_keep_delivering() -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    with System(partitions=1) as system:
        assert system.receiver is not None
        first = system.start_api(wait=False, API_WEBHOOK_ENCRYPTION_KEY=f"{old},{new}")
        second = system.start_api(wait=False, API_WEBHOOK_ENCRYPTION_KEY=f"{new},{old}")
        system.start_worker(wait=False, WORKER_WEBHOOK_ENCRYPTION_KEY=f"{new},{old}")
        system.ready()
        tenant = system.add_tenant()
        system.subscribe(tenant, "/first", api=first)  # sealed with the old key
        system.subscribe(tenant, "/second", api=second)  # sealed with the new key

        def deliver(api: ServiceProcess, count: int) -> None:
            created = httpx.post(
                f"{api.url}/api/v1/mandates",
                json={"vc_jwt": system.issuers[0].mandate()},
                headers=tenant.headers(),
                timeout=10,
            )
            assert created.status_code == 201, created.text
            assert system.receiver is not None
            system.receiver.wait_for(
                lambda r: len(r.at("/first")) >= count and len(r.at("/second")) >= count
            )

        deliver(first, 1)
        assert keys_cli(system, f"{new},{old}", "status")[1].startswith(
            "webhook secrets: 2 stored, 1 not under the newest"
        )
        assert keys_cli(system, f"{new},{old}", "reencrypt") == [
            "webhook secrets: 2 checked, 1 moved to the newest key"
        ]
        assert "0 not under the newest" in keys_cli(system, new, "status")[1]
        # The old key is gone everywhere: deliveries still sign with the same secrets.
        system.retire(system.workers[0])
        system.start_worker(WORKER_WEBHOOK_ENCRYPTION_KEY=new)
        deliver(second, 2)
        assert not system.receiver.invalid
        bodies = {json.loads(d.body)["data"]["id"] for d in system.receiver.at("/first")}
        assert len(bodies) == 2
