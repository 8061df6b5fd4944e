"""The api in-process on real PostgreSQL, talking to a real jwt-verifier process."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from mandate_vault_harness.inprocess import Api, running_api
from mandate_vault_harness.issuer import Issuer, truststore_json
from mandate_vault_harness.services import ServiceProcess


@pytest.fixture(scope="session")
def other_bank() -> Issuer:
    return Issuer(did="did:web:other-bank.example.com", kid="other-1")


@pytest.fixture(scope="session")
def verifier(bank: Issuer, other_bank: Issuer) -> Iterator[ServiceProcess]:
    process = ServiceProcess(
        "jwt-verifier", {"VERIFIER_TRUSTSTORE_JSON": truststore_json(bank, other_bank)}
    ).start()
    yield process
    process.stop()


@pytest.fixture
async def api(database_url: str, verifier: ServiceProcess) -> AsyncIterator[Api]:
    async with running_api(database_url, verifier.url) as instance:
        yield instance
