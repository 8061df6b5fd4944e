"""The shared SSRF guard: every blocked range and encoding, statically and at connect time."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from mandate_vault_harness.net import BLOCKED_HOSTS, PUBLIC_HOSTS
from mandate_vault_shared.errors import Unprocessable
from mandate_vault_shared.ssrf import (
    RedirectRefused,
    ResponseTooLarge,
    SsrfBlocked,
    SsrfPolicy,
    blocked_reason,
    guarded_session,
    parse_ipv4_like_resolver,
    read_capped,
)

STRICT = SsrfPolicy()


@pytest.mark.parametrize("host", BLOCKED_HOSTS)
def test_blocked_addresses_are_refused_in_every_spelling(host: str) -> None:
    with pytest.raises(SsrfBlocked):
        STRICT.check_url(f"https://{host}/hook")
    with pytest.raises(SsrfBlocked):
        STRICT.check_url(f"https://{host}:8443/hook")


@pytest.mark.parametrize("host", PUBLIC_HOSTS)
def test_public_hosts_pass_the_static_check(host: str) -> None:
    assert STRICT.check_url(f"https://{host}/hook").scheme == "https"


@pytest.mark.parametrize(
    "text",
    ["2130706433", "0177.0.0.1", "0x7f.1", "127.1", "0x7f.0.0.0x1", "1.2.3.4", "0", "00",
     "017700000001", "255.255.255.255", "0xffffffff", "1.16777215", "1.2.65535", "010.8.8.8"],
)  # fmt: skip
def test_ipv4_parsing_matches_the_c_library(text: str) -> None:
    expected = ipaddress.IPv4Address(socket.inet_aton(text))
    assert parse_ipv4_like_resolver(text) == expected


@pytest.mark.parametrize(
    "text",
    ["08.0.0.1", "1.2.3.4.5", "256.1.1.1", "1.2.3.256", "1.16777216", "0x1g", "1..1", "",
     "4294967296", "1.2.3.4 foo", "+1.2.3.4", "1_0.0.0.1", "0x7_f.1"],
)  # fmt: skip
def test_ipv4_parsing_refuses_what_is_not_an_address(text: str) -> None:
    assert parse_ipv4_like_resolver(text) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/hook",  # https required
        "ftp://example.com/file",
        "file:///etc/passwd",
        "gopher://example.com:70/",
        "https://user:secret@example.com/",
        "https://example.com@127.0.0.1/",
        "https:///path-only",
        "https://exa mple.com/",
        "https://ex%41mple.com/",
        "https://256.1.1.1/",
        "https://08.0.0.1/",
        "https://1.2.3.4.5/",
        "https://[fe80::1%25eth0]/",
        "https://[::1/",
        "not a url",
    ],
)
def test_url_shapes_that_are_refused(url: str) -> None:
    with pytest.raises(SsrfBlocked):
        STRICT.check_url(url)


def test_http_is_allowed_only_when_https_is_not_required() -> None:
    relaxed = SsrfPolicy(require_https=False)
    assert relaxed.check_url("http://example.com/").scheme == "http"
    with pytest.raises(SsrfBlocked):
        relaxed.check_url("ftp://example.com/")
    with pytest.raises(SsrfBlocked):
        relaxed.check_url("http://127.0.0.1/")


def test_blocked_is_a_422_domain_error_with_a_reason() -> None:
    with pytest.raises(SsrfBlocked) as caught:
        STRICT.check_url("https://[::ffff:169.254.169.254]/latest/meta-data")
    assert isinstance(caught.value, Unprocessable)
    assert caught.value.status == 422
    assert caught.value.code == "url_not_allowed"
    assert "link-local" in caught.value.detail


def test_ipv4_mapped_addresses_are_judged_as_their_ipv4() -> None:
    for v4 in ["127.0.0.1", "10.0.0.1", "169.254.169.254", "100.64.0.1"]:
        mapped = ipaddress.IPv6Address(f"::ffff:{v4}")
        assert blocked_reason(mapped) == blocked_reason(ipaddress.IPv4Address(v4)) is not None
    assert blocked_reason(ipaddress.ip_address("::ffff:8.8.8.8")) is None


def test_the_allow_list_is_explicit_and_narrow() -> None:
    policy = SsrfPolicy(allowlist=["127.0.0.1", "localhost", "10.8.0.0/16", "[::1]"])
    for url in ["https://127.0.0.1:8443/", "https://localhost/", "https://10.8.1.2/",
                "https://[::1]/", "https://0x7f.1/", "https://[::ffff:127.0.0.1]/"]:  # fmt: skip
        policy.check_url(url)
    for url in ["https://127.0.0.2/", "https://10.9.0.1/", "https://169.254.169.254/",
                "https://[::2]/"]:  # fmt: skip
        with pytest.raises(SsrfBlocked):
            policy.check_url(url)
    assert SsrfPolicy(allowlist=["LOCALHOST."]).host_allowlisted("localhost")


# --- connect time -------------------------------------------------------------------------


@dataclass
class LocalServer:
    port: int
    requests: list[str] = field(default_factory=list)


@pytest.fixture
async def local_server() -> AsyncIterator[LocalServer]:
    """A plain HTTP server on 127.0.0.1 that only a guarded session would refuse to reach."""
    state = LocalServer(port=0)

    async def handle(request: web.Request) -> web.StreamResponse:
        state.requests.append(request.path)
        if request.path == "/redirect":
            raise web.HTTPFound("/landing")
        if request.path == "/big":
            return web.Response(body=b"x" * 100_000)
        if request.path == "/big-chunked":
            response = web.StreamResponse()
            response.enable_chunked_encoding()
            await response.prepare(request)
            for _ in range(100):
                await response.write(b"y" * 1000)
            await response.write_eof()
            return response
        if request.path == "/slow":
            await asyncio.sleep(1)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield state
    await runner.cleanup()


async def _get(policy: SsrfPolicy, url: str, **kwargs: object) -> tuple[int, bytes]:
    async with (
        guarded_session(policy, 1.0) as session,
        session.get(url, allow_redirects=False, **kwargs) as response,  # type: ignore[arg-type]
    ):
        return response.status, await read_capped(response, 1_000_000)


async def test_a_name_resolving_to_loopback_is_refused_at_connect_time(
    local_server: LocalServer,
) -> None:
    policy = SsrfPolicy(require_https=False)
    url = f"http://localhost:{local_server.port}/"
    policy.check_url(url)  # nothing to object to in the URL itself
    with pytest.raises(SsrfBlocked, match="loopback"):
        await _get(policy, url)
    assert local_server.requests == []


async def test_an_ip_literal_is_refused_at_connect_time(local_server: LocalServer) -> None:
    with pytest.raises(SsrfBlocked):
        await _get(SsrfPolicy(require_https=False), f"http://127.0.0.1:{local_server.port}/")
    with pytest.raises((SsrfBlocked, aiohttp.InvalidURL)):
        await _get(SsrfPolicy(require_https=False), f"http://2130706433:{local_server.port}/")
    assert local_server.requests == []


@pytest.mark.parametrize(
    ("allowlist", "host"),
    [(["localhost"], "localhost"), (["127.0.0.1"], "127.0.0.1"), (["127.0.0.0/8"], "127.0.0.1")],
)
async def test_the_allow_list_opens_the_way(
    local_server: LocalServer, allowlist: list[str], host: str
) -> None:
    policy = SsrfPolicy(allowlist=allowlist, require_https=False)
    status, body = await _get(policy, f"http://{host}:{local_server.port}/hello")
    assert (status, body) == (200, b"ok")
    assert local_server.requests == ["/hello"]


class FixedResolver(AbstractResolver):
    """Answers every name with fixed addresses: an attacker's DNS, rebinding at will."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(hostname=host, host=address, port=port, family=family, proto=0, flags=0)
            for address in self.addresses
        ]

    async def close(self) -> None:
        pass


@pytest.mark.parametrize(
    "answers",
    [("127.0.0.1",), ("93.184.215.14", "10.0.0.5"), ("::ffff:169.254.169.254",), ("fe80::1",)],
)
async def test_every_resolved_address_is_checked(
    local_server: LocalServer, answers: tuple[str, ...]
) -> None:
    policy = SsrfPolicy(require_https=False)
    session = guarded_session(policy, 1.0, resolver=FixedResolver(*answers))
    async with session:
        with pytest.raises(SsrfBlocked):
            await session.get(f"http://rebind.example:{local_server.port}/")
    assert local_server.requests == []


async def test_redirects_are_never_followed(local_server: LocalServer) -> None:
    policy = SsrfPolicy(allowlist=["127.0.0.1"], require_https=False)
    url = f"http://127.0.0.1:{local_server.port}/redirect"
    status, _ = await _get(policy, url)
    assert status == 302
    async with guarded_session(policy, 1.0) as session:
        with pytest.raises(RedirectRefused):
            await session.get(url)  # aiohttp would follow by default
    assert local_server.requests == ["/redirect", "/redirect"]


@pytest.mark.parametrize("path", ["/big", "/big-chunked"])
async def test_bodies_are_capped(local_server: LocalServer, path: str) -> None:
    policy = SsrfPolicy(allowlist=["127.0.0.1"], require_https=False)
    async with (
        guarded_session(policy, 2.0) as session,
        session.get(f"http://127.0.0.1:{local_server.port}{path}") as response,
    ):
        with pytest.raises(ResponseTooLarge):
            await read_capped(response, 10_000)
    async with (
        guarded_session(policy, 2.0) as session,
        session.get(f"http://127.0.0.1:{local_server.port}{path}") as response,
    ):
        assert len(await read_capped(response, 100_000)) == 100_000


async def test_time_is_capped(local_server: LocalServer) -> None:
    policy = SsrfPolicy(allowlist=["127.0.0.1"], require_https=False)
    loop = asyncio.get_running_loop()
    start = loop.time()
    async with guarded_session(policy, 0.3) as session:
        with pytest.raises(TimeoutError):
            await session.get(f"http://127.0.0.1:{local_server.port}/slow")
    assert loop.time() - start < 1.5


async def test_proxies_are_refused(local_server: LocalServer) -> None:
    policy = SsrfPolicy(allowlist=["127.0.0.1"], require_https=False)
    async with guarded_session(policy, 1.0) as session:
        with pytest.raises(SsrfBlocked, match="Prox"):
            await session.get("http://example.com/", proxy=f"http://127.0.0.1:{local_server.port}")
    assert local_server.requests == []
