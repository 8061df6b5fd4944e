"""Refusals answered by the HTTP server itself, before a request has a task.

Under overload most requests are refused (at 200 % of capacity, one in two), and that CPU
comes out of the requests admitted. Through the ASGI app a refusal needs a response cycle, an
asyncio task, the layers down to `AdmissionMiddleware` and two writes (status line and headers,
then the body).

`EdgeProtocol` is uvicorn's httptools protocol with one hook: when a request is about to start
(`_start_asgi_task`, also for pipelined requests), it asks admission control whether the
request's budget refuses it without waiting (`AdmissionControl.refuse_now`: ``queue_full`` or
``expected_wait``). If so, it writes the same 503 the middleware would (one error shape,
``Retry-After``, ``X-Request-Id``, counted the same way) in one write, and the request's body,
if any, is read and dropped as uvicorn does after any early answer. Measured with wrk against
an api whose one slot is held by a stalled verifier: 93-103 us of api CPU per refusal against
114-128 us through the app.

Everything else - requests that start, wait for their turn or are refused at their deadline -
goes to the app as before, so `AdmissionMiddleware` stays the one place that admits, and
in-process apps (tests) behave the same.

`_start_asgi_task` and the cycle's fields are uvicorn internals (uvicorn is pinned in
``uv.lock``); ``tests/shared/test_edge.py`` fails loudly if they change.
"""

from __future__ import annotations

from typing import Any, ClassVar, Final, cast

from starlette.types import Scope
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from mandate_vault_shared.web.admission import AdmissionControl, Refusal

STATUS_LINE: Final = b"HTTP/1.1 503 Service Unavailable\r\n"


class EdgeProtocol(HttpToolsProtocol):
    admission: ClassVar[AdmissionControl]

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        # A client that does not read its answers gets them through the app, which waits for
        # the socket to drain: written here, pipelined refusals would pile up in memory.
        if not self.flow.write_paused:
            refusal = self.admission.refuse_now(cast(Scope, cycle.scope))
            if refusal is not None:
                self._answer(cycle, refusal)
                return
        super()._start_asgi_task(cycle, app)

    def _answer(self, cycle: RequestResponseCycle, refusal: Refusal) -> None:
        # A client waiting for "100 Continue" may never send the body the parser expects.
        keep_alive = cycle.keep_alive and not cycle.waiting_for_100_continue
        lines = [STATUS_LINE]
        for name, value in [*cycle.default_headers, *refusal.headers]:
            lines += [name, b": ", value, b"\r\n"]
        if not keep_alive:
            lines.append(b"connection: close\r\n")
        lines.append(b"\r\n")
        if cycle.scope["method"] != "HEAD":
            lines.append(refusal.body)
        cycle.response_started = cycle.response_complete = True
        self.transport.write(b"".join(lines))
        cycle.message_event.set()
        if not keep_alive:
            self.transport.close()
        cycle.on_response()


def edge_protocol(admission: AdmissionControl) -> type[EdgeProtocol]:
    """The protocol class to give uvicorn (``http=``) for an app with this admission control."""
    return type("AdmittingHttpToolsProtocol", (EdgeProtocol,), {"admission": admission})
