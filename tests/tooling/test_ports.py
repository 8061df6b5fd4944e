"""The harness's ports for services: never handed out twice, never from the ephemeral range."""

from __future__ import annotations

import socket

from mandate_vault_harness.net import free_port


def test_free_ports_are_distinct_bindable_and_below_the_ephemeral_range() -> None:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as ranges:
        ephemeral_low = int(ranges.read().split()[0])
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    assert max(ports) < ephemeral_low
    for port in ports[:5]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_a_port_something_listens_on_is_skipped() -> None:
    candidate = free_port() + 1  # the next one it would hand out
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", candidate))
        taken.listen()
        assert free_port() != candidate
