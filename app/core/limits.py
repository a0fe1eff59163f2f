"""Request body limits: `TRAINYARD_MAX_BODY_MB` for everything, `TRAINYARD_MAX_UPLOAD_MB` for the routes
that take files (dataset ZIPs, images). A larger body is refused with 413 problem+json before the
endpoint runs: by its Content-Length at once, or as soon as a chunked body passes the limit.

FastAPI reads a body before its dependencies check the key, so the key is checked here, and only when
an upload outgrows the small limit: a bad key is a 401 before anything past that limit is read, a good
one raises the limit and is handed on to `authenticate` (one key lookup per request, as always)."""

import re

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.auth import bearer, principal_from_header
from app.core.errors import AppError
from app.core.inputs import parse_decimal
from app.core.settings import get_settings

# POST /api/v1/datasets (a ZIP), POST /api/v1/datasets/{id}/annotations and /api/v1/inference[/jobs]
# (images; each image has its own limit, TRAINYARD_INFERENCE_MAX_IMAGE_MB), POST /api/v1/weights (a .pt).
UPLOAD_PATHS = re.compile(r"^/api/v1/(datasets(/\d+/annotations)?|inference(/jobs)?|weights)/?$")
MB = 1024 * 1024


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit // MB} MiB")


async def _authenticate_upload(scope: Scope) -> None:
    """401 unless the request carries a valid key; the Principal is kept for `authenticate`."""
    request = Request(scope)
    try:
        credentials = await bearer(request)
        principal = await run_in_threadpool(principal_from_header, scope["app"].state.db, credentials)
    except AppError as exc:  # FastAPI lets only HTTPException out of its body parsing as it is
        raise HTTPException(exc.status, exc.detail, exc.headers) from exc
    request.state.principal = principal


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        settings = get_settings()
        headers = dict(scope["headers"])
        limit = int(settings.max_body_mb * MB)
        may_upload = b"authorization" in headers and UPLOAD_PATHS.match(scope["path"]) is not None
        declared = parse_decimal(headers.get(b"content-length", b"").decode("latin-1"), max_digits=30)
        received = 0

        async def check(size: int) -> None:
            nonlocal limit, may_upload
            if size > limit and may_upload:
                may_upload = False
                await _authenticate_upload(scope)
                limit = int(settings.max_upload_mb * MB)
            if size > limit:
                raise BodyTooLarge(limit)

        async def limited() -> Message:
            # Raised inside the app, so the app's handlers answer with problem+json (and a request id).
            nonlocal received
            if declared is not None:
                await check(declared)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                await check(received)
            return message

        await self.app(scope, limited, send)
