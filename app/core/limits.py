"""Request body limits: `TRAINYARD_MAX_BODY_MB` for everything, `TRAINYARD_MAX_UPLOAD_MB` for the routes
that take files (dataset ZIPs, images). A larger body is refused with 413 problem+json before the
endpoint runs: by its Content-Length at once, or as soon as a chunked body passes the limit."""

import re

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.settings import get_settings

# POST /api/v1/datasets (a ZIP), POST /api/v1/datasets/{id}/annotations and /api/v1/inference[/jobs]
# (images; each image has its own limit, TRAINYARD_INFERENCE_MAX_IMAGE_MB).
UPLOAD_PATHS = re.compile(r"^/api/v1/(datasets(/\d+/annotations)?|inference(/jobs)?)/?$")
MB = 1024 * 1024


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit // MB} MiB")


def body_limit(path: str, has_credentials: bool) -> int:
    """FastAPI reads a body before it checks the key: a request without one gets only the small limit."""
    settings = get_settings()
    upload = has_credentials and UPLOAD_PATHS.match(path) is not None
    return int((settings.max_upload_mb if upload else settings.max_body_mb) * MB)


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        limit = body_limit(scope["path"], b"authorization" in headers)
        declared = headers.get(b"content-length", b"")
        too_large = declared.isdigit() and int(declared) > limit
        received = 0

        async def limited() -> Message:
            # Raised inside the app, so the app's handler answers with problem+json (and a request id).
            nonlocal received
            if too_large:
                raise BodyTooLarge(limit)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, limited, send)
