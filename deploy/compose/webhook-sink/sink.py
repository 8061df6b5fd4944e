"""Webhook sink for the compose stack: accepts any POST, logs it as one JSON line, answers 200.

Standard library only, so it runs on a plain python:3.11-slim image. It stands in for a
tenant's webhook receiver (the worker posts signed deliveries here) and for Sentry's OTLP
intake (the collector's Sentry exporters point here unless real URLs are configured).
GET /requests lists the last requests (headers and the first bytes of the body); GET /healthz
answers for the healthcheck. Development use only: it verifies nothing.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

KEEP = 200
BODY_PREVIEW = 2048
HIDDEN_HEADERS = frozenset({"authorization", "cookie", "x-sentry-auth"})
RECEIVED: deque[dict[str, object]] = deque(maxlen=KEEP)


class Sink(BaseHTTPRequestHandler):
    server_version = "webhook-sink"

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self._reply(200, {"status": "ok"})
        elif self.path == "/requests":
            self._reply(200, list(RECEIVED))
        else:
            self._reply(404, {"error": "not_found"})

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        entry = {
            "received_at": time.time(),
            "path": self.path,
            "headers": {
                k.lower(): "[hidden]" if k.lower() in HIDDEN_HEADERS else v
                for k, v in self.headers.items()
            },
            "body_bytes": len(body),
            "body": body[:BODY_PREVIEW].decode("utf-8", errors="replace"),
        }
        RECEIVED.append(entry)
        sys.stdout.write(json.dumps({"event": "request_received", **entry}) + "\n")
        sys.stdout.flush()
        self._reply(200, {"status": "received"})

    def _reply(self, status: int, payload: object) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        """One JSON line per POST is written above; no extra access log."""


def main() -> None:
    port = int(os.environ.get("SINK_PORT", "8080"))
    ThreadingHTTPServer(("0.0.0.0", port), Sink).serve_forever()


if __name__ == "__main__":
    main()
