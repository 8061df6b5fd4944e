"""Request body size limit, answered in the one error shape.

A declared ``Content-Length`` over the limit is refused before anything is read; a body that
grows past it while streaming raises `PayloadTooLarge`, which the error handler renders.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mandate_vault_shared.errors import PayloadTooLarge
from mandate_vault_shared.web.responses import JsonResponse


def _declared_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", ()):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _declared_length(scope)
        if declared is not None and declared > self.max_bytes:
            request_id = scope.get("state", {}).get("request_id", "")
            body = {
                "error": PayloadTooLarge.error_code,
                "detail": f"The request body exceeds {self.max_bytes} bytes.",
                "request_id": request_id,
            }
            await JsonResponse(body, status_code=413)(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise PayloadTooLarge(f"The request body exceeds {self.max_bytes} bytes.")
            return message

        await self.app(scope, limited_receive, send)
