"""SSRF guard for every outgoing request to a URL a tenant or an issuer chose.

Used for webhook URLs and did:web documents. Two checks, both against one `SsrfPolicy`:

- `SsrfPolicy.check_url(url)`: a static check at registration time (and again before every
  request): scheme, credentials, host syntax, IP literals in every form a resolver accepts
  (``2130706433``, ``0177.0.0.1``, ``0x7f.1``, ``[::ffff:7f00:1]``).
- at connect time, inside `guarded_session`: every address the host resolves to is checked
  (DNS rebinding), IPv4-mapped and embedded IPv4 addresses are canonicalised first, proxies
  and redirects are refused.

Exceptions::

    SsrfBlocked (Unprocessable, 422 "url_not_allowed")   the policy refused a URL or an address
    +-- RedirectRefused                                  a redirect was about to be followed
    ResponseTooLarge (aiohttp.ClientPayloadError)        `read_capped` hit its limit

The allow-list (hostnames, IP addresses, CIDRs) is the one explicit way to reach an otherwise
blocked host, e.g. ``127.0.0.1`` and ``localhost`` in tests and ``make run``.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

import aiohttp
from aiohttp import hdrs
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.client_middlewares import ClientHandlerType
from yarl import URL

from mandate_vault_shared.errors import Unprocessable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network
# (network, reason): every range the reference lists, plus the rest of the special registries.
BLOCKED_NETWORKS: Final[tuple[tuple[IPNetwork, str], ...]] = (
    (_V4("0.0.0.0/8"), "'this' network"),
    (_V4("10.0.0.0/8"), "private"),
    (_V4("100.64.0.0/10"), "carrier-grade NAT"),
    (_V4("127.0.0.0/8"), "loopback"),
    (_V4("169.254.0.0/16"), "link-local (cloud metadata)"),
    (_V4("172.16.0.0/12"), "private"),
    (_V4("192.0.0.0/24"), "IETF protocol assignments"),
    (_V4("192.0.2.0/24"), "documentation"),
    (_V4("192.88.99.0/24"), "6to4 relay anycast"),
    (_V4("192.168.0.0/16"), "private"),
    (_V4("198.18.0.0/15"), "benchmarking"),
    (_V4("198.51.100.0/24"), "documentation"),
    (_V4("203.0.113.0/24"), "documentation"),
    (_V4("224.0.0.0/4"), "multicast"),
    (_V4("240.0.0.0/4"), "reserved"),
    (_V4("255.255.255.255/32"), "broadcast"),
    (_V6("::/128"), "unspecified"),
    (_V6("::1/128"), "loopback"),
    (_V6("::/96"), "IPv4-compatible (deprecated)"),
    (_V6("::ffff:0:0/96"), "IPv4-mapped"),
    (_V6("64:ff9b:1::/48"), "local-use NAT64"),
    (_V6("100::/64"), "discard-only"),
    (_V6("2001::/23"), "IETF protocol assignments (Teredo, ...)"),
    (_V6("2001:db8::/32"), "documentation"),
    (_V6("3fff::/20"), "documentation"),
    (_V6("fc00::/7"), "unique local (private)"),
    (_V6("fe80::/10"), "link-local"),
    (_V6("fec0::/10"), "site-local (deprecated)"),
    (_V6("ff00::/8"), "multicast"),
)
_NAT64: Final = _V6("64:ff9b::/96")
_SIXTO4: Final = _V6("2002::/16")

_ALLOWED_SCHEMES: Final = frozenset({"http", "https"})
_LABEL: Final = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")
_NUMERIC_LABEL: Final = re.compile(r"0x[0-9a-f]*|[0-9]+", re.IGNORECASE)
_HEX: Final = re.compile(r"0x[0-9a-f]*", re.IGNORECASE)
_OCTAL: Final = re.compile(r"0[0-7]*")
_DECIMAL: Final = re.compile(r"[1-9][0-9]*")
_REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})


def valid_hostname(host: str) -> bool:
    """A DNS name made of valid labels (lower-case it first)."""
    labels = host.rstrip(".").split(".")
    return len(host) <= 253 and all(_LABEL.fullmatch(label) for label in labels)


class SsrfBlocked(Unprocessable):
    """A URL or a resolved address that the SSRF policy refuses."""

    error_code = "url_not_allowed"
    default_detail = "The URL is not allowed."


class RedirectRefused(SsrfBlocked):
    default_detail = "Redirects are not followed."


class ResponseTooLarge(aiohttp.ClientPayloadError):
    """The response body exceeded the cap given to `read_capped`."""


def parse_ipv4_like_resolver(host: str) -> ipaddress.IPv4Address | None:
    """Parse ``host`` as the C library's ``inet_aton`` would, or return None.

    Accepts one to four dot-separated parts, each decimal, octal (leading ``0``) or hex
    (``0x``); the last part fills the remaining bytes. So ``2130706433``, ``0177.0.0.1``,
    ``0x7f.1`` and ``127.1`` are all 127.0.0.1. Unlike glibc, nothing may follow the address.
    """
    parts = host.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    numbers: list[int] = []
    for part in parts:
        number = _parse_inet_number(part)
        if number is None:
            return None
        numbers.append(number)
    *head, last = numbers
    if any(n > 0xFF for n in head) or last >= 256 ** (5 - len(numbers)):
        return None
    value = last
    for index, number in enumerate(head):
        value += number << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


def _parse_inet_number(part: str) -> int | None:
    if _HEX.fullmatch(part):
        return int(part[2:] or "0", 16)
    if _OCTAL.fullmatch(part):
        return int(part, 8)
    if _DECIMAL.fullmatch(part):
        return int(part, 10)
    return None


def canonical_address(address: IPAddress) -> IPAddress:
    """IPv4-mapped (``::ffff:a.b.c.d``), NAT64 and 6to4 addresses as the IPv4 they reach."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if address.sixtofour is not None:
            return address.sixtofour
    return address


def blocked_reason(address: IPAddress) -> str | None:
    """Why ``address`` may not be reached (None when it is a public unicast address)."""
    address = canonical_address(address)
    for network, reason in BLOCKED_NETWORKS:
        if address.version == network.version and address in network:
            return reason
    if not address.is_global or address.is_multicast or address.is_reserved:
        return "not globally routable"
    return None


def parse_host_address(host: str) -> IPAddress | None:
    """The address an IP-literal host names (every resolver form), or None for a hostname."""
    candidate = host.strip("[]").rstrip(".") if host.startswith("[") else host.rstrip(".")
    if "%" in candidate:
        raise SsrfBlocked("The URL host may not contain '%' (zone or escape).")
    if ":" in candidate:
        try:
            return ipaddress.IPv6Address(candidate)
        except ValueError as exc:
            raise SsrfBlocked("The URL host is not a valid IPv6 address.") from exc
    labels = candidate.split(".")
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        # A host ending in a number is an IPv4 address to resolvers and browsers alike.
        address = parse_ipv4_like_resolver(candidate)
        if address is None:
            raise SsrfBlocked("The URL host is not a valid IPv4 address.")
        return address
    return None


@dataclass(frozen=True)
class SsrfPolicy:
    """What outgoing requests may reach. ``allowlist`` entries are hostnames, IPs or CIDRs."""

    allowlist: Iterable[str] = ()
    require_https: bool = True
    _hosts: frozenset[str] = field(init=False, repr=False)
    _networks: tuple[IPNetwork, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for raw in self.allowlist:
            entry = raw.strip().lower().strip("[]").rstrip(".")
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.add(entry)
        object.__setattr__(self, "allowlist", tuple(self.allowlist))
        object.__setattr__(self, "_hosts", frozenset(hosts))
        object.__setattr__(self, "_networks", tuple(networks))

    def host_allowlisted(self, host: str) -> bool:
        return host.lower().rstrip(".") in self._hosts

    def address_allowlisted(self, address: IPAddress) -> bool:
        candidates = {address, canonical_address(address)}
        return any(
            candidate.version == network.version and candidate in network
            for candidate in candidates
            for network in self._networks
        )

    def check_url(self, url: str | URL) -> URL:
        """Refuse a URL by its shape alone (no DNS); return it parsed. Raises `SsrfBlocked`."""
        try:
            target = url if isinstance(url, URL) else URL(url)
        except (ValueError, TypeError) as exc:
            raise SsrfBlocked("The URL cannot be parsed.") from exc
        if target.scheme not in _ALLOWED_SCHEMES or (
            self.require_https and target.scheme != "https"
        ):
            raise SsrfBlocked("Only https URLs are allowed." if self.require_https else None)
        if target.user is not None or target.password is not None:
            raise SsrfBlocked("URLs with credentials are not allowed.")
        host = target.raw_host
        if not host:
            raise SsrfBlocked("The URL has no host.")
        self.check_host(host)
        return target

    def check_host(self, host: str) -> None:
        address = parse_host_address(host)
        if address is not None:
            self.check_address(address)
            return
        if self.host_allowlisted(host):
            return
        labels = host.lower().rstrip(".").split(".")
        if not all(_LABEL.fullmatch(label) for label in labels):
            raise SsrfBlocked("The URL host is not a valid hostname.")

    def check_address(self, address: IPAddress, hostname: str | None = None) -> None:
        if hostname is not None and self.host_allowlisted(hostname):
            return
        if self.address_allowlisted(address):
            return
        reason = blocked_reason(address)
        if reason is not None:
            raise SsrfBlocked(f"The URL resolves to a blocked address ({reason}).")


class GuardedResolver(AbstractResolver):
    """Resolves with ``inner`` and refuses the answer if any address is blocked."""

    def __init__(self, policy: SsrfPolicy, inner: AbstractResolver | None = None) -> None:
        self._policy = policy
        self._inner = inner or aiohttp.DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            try:
                address = ipaddress.ip_address(result["host"].split("%", 1)[0])
            except ValueError as exc:
                raise SsrfBlocked("The resolver answered something that is not an IP.") from exc
            self._policy.check_address(address, hostname=host)
        return results

    async def close(self) -> None:
        await self._inner.close()


def _guard_middleware(policy: SsrfPolicy) -> aiohttp.ClientMiddlewareType:
    async def guard(
        request: aiohttp.ClientRequest, handler: ClientHandlerType
    ) -> aiohttp.ClientResponse:
        if request.proxy is not None:
            raise SsrfBlocked("Proxies are not allowed.")
        # IP-literal hosts never reach the resolver, so this is their connect-time check.
        policy.check_url(request.url)
        # Bodies are capped as received: no compressed bombs.
        request.headers[hdrs.ACCEPT_ENCODING] = "identity"
        return await handler(request)

    return guard


async def _refuse_redirect(
    _: aiohttp.ClientSession, __: object, params: aiohttp.TraceRequestRedirectParams
) -> None:
    if params.response.status in _REDIRECT_STATUSES:
        raise RedirectRefused


def guarded_session(
    policy: SsrfPolicy,
    timeout_s: float,
    *,
    ssl_context: ssl.SSLContext | None = None,
    connect_timeout_s: float | None = None,
    limit: int = 100,
    resolver: AbstractResolver | None = None,
) -> aiohttp.ClientSession:
    """A session that can reach only what ``policy`` allows, within ``timeout_s`` per request.

    Callers should still pass ``allow_redirects=False``: a redirect that aiohttp would follow
    raises `RedirectRefused` instead. Environment proxies are ignored (``trust_env=False``).
    """
    redirects = aiohttp.TraceConfig()
    redirects.on_request_redirect.append(_refuse_redirect)
    connector = aiohttp.TCPConnector(
        resolver=GuardedResolver(policy, resolver),
        ssl=ssl_context if ssl_context is not None else True,
        limit=limit,
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=timeout_s, connect=connect_timeout_s or timeout_s),
        middlewares=(_guard_middleware(policy),),
        trace_configs=[redirects],
        trust_env=False,
        auto_decompress=False,
    )


async def read_capped(response: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    """The body of ``response``, refusing to hold more than ``max_bytes`` of it in memory."""
    if response.content_length is not None and response.content_length > max_bytes:
        raise ResponseTooLarge(f"response declares {response.content_length} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(16 * 1024):
        size += len(chunk)
        if size > max_bytes:
            raise ResponseTooLarge(f"response exceeds {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
