"""Telemetry endpoints for paired runs, in their own process so that they cost the load
generator nothing: `DiscardServer` accepts OTLP and Sentry envelopes and throws them away.

Run as ``python -m mandate_vault_harness.sinks PORT``.
"""

from __future__ import annotations

import subprocess
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from mandate_vault_harness.net import free_port, wait_for_port
from mandate_vault_harness.services import REPO_ROOT


class _Discard(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *_: Any) -> None:
        pass


class DiscardServer:
    """A healthy collector/Loki/Sentry stand-in: answers 200 to everything, keeps nothing."""

    def __init__(self) -> None:
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> DiscardServer:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "mandate_vault_harness.sinks", str(self.port)],
            cwd=REPO_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(5)
            self._process = None


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), _Discard)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
