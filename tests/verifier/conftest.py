"""Fixtures of the verifier suite: session-wide keys and HTTPS server, in-process verifiers."""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from opentelemetry.trace import NoOpTracer

from mandate_vault_harness.jose import (
    DidServer,
    Keys,
    TlsFiles,
    VerifierFactory,
    ec_key,
    ed_key,
    make_tls,
    rsa_key,
)
from mandate_vault_shared.ssrf import SsrfPolicy, guarded_session
from mandate_vault_shared.telemetry.semconv import HttpClientTelemetry
from mandate_vault_verifier.resolver import DidWebResolver
from mandate_vault_verifier.truststore import parse_truststore
from mandate_vault_verifier.verifier import Verifier

LOCAL = ("127.0.0.1", "localhost")


@pytest.fixture(scope="session")
def keys() -> Keys:
    rsa = rsa_key("rsa-1")
    return Keys(
        rsa=rsa,
        ps=rsa.with_kid("rsa-1", "PS256"),
        ec=ec_key("ec-1"),
        ec384=ec_key("ec384-1", ec.SECP384R1(), "ES384"),
        ed=ed_key("ed-1"),
        stranger_rsa=rsa_key("rsa-1"),
        stranger_ec=ec_key("ec-1"),
        stranger_ed=ed_key("ed-1"),
    )


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def did_server_session(tls: TlsFiles) -> Iterator[DidServer]:
    server = DidServer(tls)
    yield server
    server.close()


@pytest.fixture
def did_server(did_server_session: DidServer) -> DidServer:
    did_server_session.reset()
    return did_server_session


@pytest.fixture
async def make_verifier(tls: TlsFiles) -> AsyncIterator[VerifierFactory]:
    """Build in-process verifiers wired exactly as the service's lifespan wires them."""
    cleanups: list[Any] = []

    def factory(
        issuers: list[dict[str, Any]],
        *,
        allowlist: tuple[str, ...] = LOCAL,
        trust_test_ca: bool = True,
        leeway: float = 30.0,
        max_token_bytes: int = 16 * 1024,
        timeout: float = 2.0,
        ttl: float = 300.0,
        failure_ttl: float = 30.0,
        max_bytes: int = 64 * 1024,
        clock: Callable[[], float] | None = None,
    ) -> Verifier:
        truststore = parse_truststore(json.dumps({"issuers": issuers}))
        context = ssl.create_default_context(cafile=str(tls.ca_file)) if trust_test_ca else None
        session = guarded_session(SsrfPolicy(allowlist=allowlist), timeout, ssl_context=context)
        extra = {"clock": clock} if clock is not None else {}
        resolver = DidWebResolver(
            session, HttpClientTelemetry(NoOpTracer()), max_bytes=max_bytes, ttl_seconds=ttl,
            failure_ttl_seconds=failure_ttl, **extra,
        )  # fmt: skip
        cleanups.append((resolver, session))
        return Verifier(
            truststore, resolver, leeway_seconds=leeway, max_token_bytes=max_token_bytes
        )

    yield factory
    for resolver, session in cleanups:
        await resolver.aclose()
        await session.close()
