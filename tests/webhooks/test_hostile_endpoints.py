"""Hostile endpoints keep their caps: a huge body is never read, a slow drip and a silent
endpoint hit the per-attempt timeout, oversized headers and redirects are failures. Each is
recorded in the delivery log and the worker carries on (alive, memory flat)."""

from __future__ import annotations

import socketserver
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from mandate_vault_harness.issuer import Issuer
from mandate_vault_harness.system import System, Tenant

_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"


class _Hostile(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            head += self.rfile.readline()
        length = next(
            (
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ),
            0,
        )
        self.rfile.read(length)
        try:
            self._answer(head.split(b" ")[1])
            time.sleep(30)  # /never answers at all; the others hold the connection open
        except OSError:
            pass

    def _answer(self, path: bytes) -> None:
        if path == b"/huge-body":  # 1 GiB announced, streamed for as long as it is read
            self.wfile.write(_HEAD + b"Content-Length: 1073741824\r\n\r\n")
            for _ in range(16_384):
                self.wfile.write(b"x" * 65536)
        elif path == b"/drip":  # one byte of the status line every half second
            for byte in _HEAD:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(0.5)
        elif path == b"/huge-headers":
            self.wfile.write(_HEAD + b"X-Junk: " + b"j" * 1_000_000 + b"\r\n\r\n")
        elif path == b"/redirect":
            self.wfile.write(
                b"HTTP/1.1 307 Temporary Redirect\r\nLocation: /elsewhere\r\n"
                b"Content-Length: 0\r\n\r\n"
            )
        self.wfile.flush()


@pytest.fixture
def hostile() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Hostile)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


PATHS = ("/huge-body", "/drip", "/never", "/huge-headers", "/redirect")


def test_hostile_endpoints_are_recorded_and_never_crash_the_worker(
    stack: System, tenant: Tenant, bank: Issuer, hostile: int
) -> None:
    worker = stack.workers[0]
    subscriptions = {}
    with stack.client(tenant) as client:
        for path in PATHS:
            response = client.post(
                "/api/v1/webhooks",
                json={
                    "url": f"http://127.0.0.1:{hostile}{path}",
                    "event_types": ["MandateCreated"],
                },
            )
            assert response.status_code == 201, response.text
            subscriptions[path] = response.json()["id"]
    rss_before = worker.rss_mb()
    stack.create_mandate(tenant, bank.mandate())

    def log_of() -> dict[str, list[dict[str, object]]]:
        with stack.client(tenant) as client:
            return {
                path: client.get(f"/api/v1/webhooks/{subscription_id}/deliveries").json()
                for path, subscription_id in subscriptions.items()
            }

    def recorded(r: object) -> bool:
        found = log_of()
        # A loaded machine may time the 2xx out once: its retry must then succeed.
        return all(found.values()) and any(e["outcome"] == "succeeded" for e in found["/huge-body"])

    stack.receiver.wait_for(recorded, timeout=30)
    first = {path: entries[-1] for path, entries in log_of().items()}  # newest first
    assert first["/drip"]["error"] == "timed out"
    assert first["/never"]["error"] == "timed out"
    assert first["/huge-headers"]["outcome"] == "retrying"
    assert "redirects are not followed" in str(first["/redirect"]["error"])
    assert all(float(str(a["latency_ms"])) < 5_000 for a in first.values())  # timeout is 2 s
    assert httpx.get(f"{worker.url}/healthz").status_code == 200
    assert worker.rss_mb() < rss_before + 50
