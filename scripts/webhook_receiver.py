"""A local webhook receiver for `make run`: prints each delivery and checks its signature.

    python scripts/webhook_receiver.py --port 9000 --secret whsec_...

Register it with `POST /api/v1/webhooks` and the URL http://127.0.0.1:9000/hooks (make run
allow-lists 127.0.0.1). Signatures are checked with the reference `standardwebhooks` library.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--secret", help="the whsec_ secret shown when you subscribed")
    args = parser.parse_args()
    verifier = Webhook(args.secret) if args.secret else None

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            headers = {k.lower(): v for k, v in self.headers.items()}
            verdict = "signature not checked (no --secret)"
            if verifier is not None:
                try:
                    verifier.verify(body, headers, json_parse=False)
                    verdict = "signature valid"
                except WebhookVerificationError as exc:
                    verdict = f"SIGNATURE INVALID: {exc}"
            event = json.loads(body)
            print(
                f"{headers.get('webhook-id')} {event.get('type')} "
                f"mandate={event.get('data', {}).get('id')} "
                f"traceparent={headers.get('traceparent')} -> {verdict}",
                flush=True,
            )
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"listening on http://127.0.0.1:{args.port}/hooks (Ctrl-C stops)", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
