"""`mandate-vault migrate` and `bootstrap`: the first admin, a tenant and issuers, no secrets logged."""

from __future__ import annotations

from mandate_vault_harness.inprocess import running_api
from mandate_vault_harness.net import free_port
from mandate_vault_harness.services import cli


async def test_bootstrap_creates_what_a_newcomer_needs(database_url: str) -> None:
    assert cli(database_url, "migrate").returncode == 0
    args = [
        "bootstrap",
        "--tenant-id", "acme-corp",
        "--tenant-name", "Acme Corp",
        "--admin-email", "Ops@Acme.example",
        "--issuer", "did:web:bank.example.com",
    ]  # fmt: skip
    first = cli(database_url, *args)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert "created tenant acme-corp" in lines
    assert "created admin ops@acme.example" in lines
    assert "trusted issuer did:web:bank.example.com" in lines
    password = next(line for line in lines if line.startswith("admin password")).split(": ", 1)[1]
    assert password not in first.stderr
    assert sum(password in line for line in lines) == 1

    second = cli(database_url, *args)
    assert second.returncode == 0
    assert "admin ops@acme.example exists (password unchanged)" in second.stdout
    assert "admin password" not in second.stdout

    async with running_api(database_url, f"http://127.0.0.1:{free_port()}") as api:
        headers = await api.login("ops@acme.example", password)
        me = (await api.client.get("/api/v1/auth/me", headers=headers)).json()
        assert (me["role"], me["tenant_id"]) == ("admin", "acme-corp")
        issuers = (await api.client.get("/api/v1/trusted-issuers", headers=headers)).json()
        assert [i["issuer"] for i in issuers] == ["did:web:bank.example.com"]


async def test_bootstrap_password_from_the_environment_is_never_printed(database_url: str) -> None:
    cli(database_url, "migrate")
    secret = "env-supplied-passphrase-123"
    result = cli(
        database_url,
        "bootstrap", "--tenant-id", "t-env", "--tenant-name", "T", "--admin-email", "a@t.example",
        env={"MV_BOOTSTRAP_PASSWORD": secret},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert secret not in result.stdout + result.stderr
