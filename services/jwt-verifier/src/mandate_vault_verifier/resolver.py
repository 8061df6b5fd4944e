"""Fetching and caching did:web keys: one fetch per issuer at a time, results kept for a TTL.

Concurrent verifications for an issuer whose keys are missing or stale share one in-flight
fetch (a task per issuer, never a global lock); a failure is remembered for a shorter TTL so a
dead issuer is not hammered. Every fetch goes through the SSRF-guarded session, is traced as a
CLIENT span, refuses redirects and is capped in size and time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

import aiohttp

from mandate_vault_shared.http_client import traced_request
from mandate_vault_shared.ssrf import ResponseTooLarge, SsrfBlocked, read_capped
from mandate_vault_shared.telemetry import get_logger
from mandate_vault_shared.telemetry.semconv import HttpClientTelemetry
from mandate_vault_verifier.didweb import InvalidDidDocument, parse_did_document
from mandate_vault_verifier.keys import TrustedKey
from mandate_vault_verifier.truststore import Issuer

_ACCEPT: Final = "application/did+json, application/did+ld+json, application/json"

log = get_logger(__name__)


class IssuerUnreachable(Exception):
    """The issuer's keys could not be obtained; the message says why (no secrets)."""


@dataclass(frozen=True, slots=True)
class _Entry:
    keys: Mapping[str, TrustedKey] | None
    error: str | None
    expires_at: float

    def unwrap(self) -> Mapping[str, TrustedKey]:
        if self.keys is None:
            raise IssuerUnreachable(self.error or "the issuer could not be resolved")
        return self.keys


class DidWebResolver:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        http: HttpClientTelemetry,
        *,
        max_bytes: int,
        ttl_seconds: float,
        failure_ttl_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._session = session
        self._http = http
        self._max_bytes = max_bytes
        self._ttl = ttl_seconds
        self._failure_ttl = failure_ttl_seconds
        self._clock = clock
        self._cache: dict[str, _Entry] = {}
        self._inflight: dict[str, asyncio.Task[_Entry]] = {}

    async def keys(self, issuer: Issuer) -> Mapping[str, TrustedKey]:
        """The issuer's current keys; raises `IssuerUnreachable`."""
        entry = self._cache.get(issuer.id)
        if entry is not None and entry.expires_at > self._clock():
            return entry.unwrap()
        task = self._inflight.get(issuer.id)
        if task is None:
            task = asyncio.create_task(self._refresh(issuer), name=f"did-web {issuer.id}")
            self._inflight[issuer.id] = task
            task.add_done_callback(lambda _: self._inflight.pop(issuer.id, None))
        # A cancelled caller (client gone) must not cancel the fetch others are waiting for.
        return (await asyncio.shield(task)).unwrap()

    async def aclose(self) -> None:
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._cache.clear()

    async def _refresh(self, issuer: Issuer) -> _Entry:
        start = time.perf_counter()
        try:
            keys = await self._fetch(issuer)
        except IssuerUnreachable as exc:
            entry = _Entry(None, str(exc), self._clock() + self._failure_ttl)
            log.warning("did_web_resolution_failed", issuer=issuer.id, reason=str(exc))
        else:
            entry = _Entry(keys, None, self._clock() + self._ttl)
            log.info(
                "did_web_resolved",
                issuer=issuer.id,
                keys=len({key.kid for key in keys.values()}),
                duration_ms=round((time.perf_counter() - start) * 1000, 2),
            )
        self._cache[issuer.id] = entry
        return entry

    async def _fetch(self, issuer: Issuer) -> Mapping[str, TrustedKey]:
        assert issuer.did_web_url is not None
        try:
            body = await self._download(issuer)
        except SsrfBlocked as exc:
            raise IssuerUnreachable(f"DID document URL refused: {exc.detail}") from None
        except ResponseTooLarge:
            msg = f"DID document larger than {self._max_bytes} bytes"
            raise IssuerUnreachable(msg) from None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            msg = f"DID document could not be fetched ({type(exc).__name__})"
            raise IssuerUnreachable(msg) from None
        try:
            return parse_did_document(issuer.id, body, issuer.algorithms)
        except InvalidDidDocument as exc:
            raise IssuerUnreachable(str(exc)) from None

    async def _download(self, issuer: Issuer) -> bytes:
        assert issuer.did_web_url is not None
        async with traced_request(
            self._session,
            self._http,
            "GET",
            issuer.did_web_url,
            headers={"Accept": _ACCEPT},
            allow_redirects=False,
        ) as response:
            if response.status != 200:
                msg = f"DID document request answered HTTP {response.status}"
                raise IssuerUnreachable(msg)
            return await read_capped(response, self._max_bytes)
