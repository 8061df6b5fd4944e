"""Ports, waiting, and a port that black-holes connections."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable

# Ports handed to services that bind them later: below Linux's ephemeral range (32768-60999),
# where bind(0) and outgoing connections take theirs, in a block per process (by pid), never the
# same one twice in a process. bind(0) may hand a just-released port straight out again, so two
# services started side by side (or by tests running in parallel) could get the same one and
# the second would find the first listening there ("404" from the wrong service).
_LOW, _HIGH, _BLOCK = 20_000, 32_000, 500
_next_port: list[int] = []
_lock = threading.Lock()


def free_port() -> int:
    with _lock:
        if not _next_port:
            blocks = (_HIGH - _LOW) // _BLOCK
            _next_port.append(_LOW + (os.getpid() % blocks) * _BLOCK)
        for _ in range(_HIGH - _LOW):
            port = _next_port[0]
            _next_port[0] = port + 1 if port + 1 < _HIGH else _LOW
            if _bindable(port):
                return port
    msg = f"no free port in {_LOW}-{_HIGH}"
    raise OSError(msg)


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    msg = f"nothing listening on {host}:{port} after {timeout}s"
    raise TimeoutError(msg)


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Poll `predicate` until it holds or `timeout` passes; whether it held in the end."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


class BlackHole:
    """A TCP port that completes no handshake beyond the kernel backlog and never answers:
    stands in for a collector, Loki or Sentry that black-holes connections."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(1)
        self.port = int(self._sock.getsockname()[1])

    def close(self) -> None:
        self._sock.close()


# Hosts an SSRF guard refuses in every spelling (loopback, private, link-local/metadata, CGNAT,
# benchmarking, documentation, multicast, reserved; resolver spellings; IPv6 and IPv4-in-IPv6),
# and public ones it lets through: the verifier's tests and the ssrf scenario share them.
BLOCKED_HOSTS = [
    # IPv4 ranges of the reference
    "127.0.0.1", "127.255.255.254", "10.0.0.1", "10.255.255.255", "172.16.0.1",
    "172.31.255.255", "192.168.0.1", "192.168.255.255", "100.64.0.1", "100.127.255.255",
    "169.254.169.254", "169.254.0.1", "0.0.0.0", "0.1.2.3", "198.18.0.1", "198.19.255.255",
    "224.0.0.1", "239.255.255.250", "240.0.0.1", "250.1.2.3", "255.255.255.255",
    "192.0.2.1", "198.51.100.7", "203.0.113.9", "192.0.0.8",
    # resolver spellings of loopback, private and metadata addresses
    "2130706433", "0177.0.0.1", "0x7f.1", "0x7f000001", "127.1", "0x7F.0.0.1",
    "017700000001", "0x7f.0.0.0x1", "3232235777", "0xa9fea9fe", "0251.0376.0251.0376",
    "127.0.0.1.", "0", "0x",
    # IPv6
    "[::1]", "[::]", "[fe80::1]", "[febf::1]", "[fc00::1]", "[fd12:3456::1]", "[ff02::1]",
    "[2001:db8::1]", "[3fff::1]", "[fec0::1]", "[100::1]", "[2001::1]",
    # IPv4 inside IPv6
    "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "[::ffff:a9fe:a9fe]", "[::ffff:10.0.0.1]",
    "[64:ff9b::a9fe:a9fe]", "[64:ff9b::7f00:1]", "[2002:7f00:1::]", "[2002:a9fe:a9fe::1]",
    "[::127.0.0.1]", "[0:0:0:0:0:ffff:127.0.0.1]",
]  # fmt: skip

PUBLIC_HOSTS = [
    "example.com", "hooks.example.org", "xn--bcher-kva.de", "93.184.215.14", "8.8.8.8",
    "1.1.1.1", "[2606:4700:4700::1111]", "[::ffff:8.8.8.8]", "[64:ff9b::808:808]",
    "[2002:808:808::1]", "localhost",  # a name: refused at connect time, see below
]  # fmt: skip
