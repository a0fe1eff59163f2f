"""Every request gets an id (the caller's `X-Request-ID` when it is at most 64 of [A-Za-z0-9._-], else a
new one): logged with every line the request causes and returned in the response header. Plain ASGI,
not BaseHTTPMiddleware, which costs every request a task group and a memory stream (about a millisecond
on this path's budget)."""

import re
import time
import uuid

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.logging import request_id_var

# What a caller's id may be: it goes into every log line and back into a header, so nothing that could
# forge a log line, bloat the logs or split a header.
SAFE_ID = re.compile(rb"[A-Za-z0-9._-]{1,64}")


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"")
        request_id = given.decode() if SAFE_ID.fullmatch(given) else uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["arrived"] = time.perf_counter()  # what the API spent on it, for timing reports
        request_id_var.set(request_id)

        async def with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["x-request-id"] = request_id
            await send(message)

        await self.app(scope, receive, with_header)
