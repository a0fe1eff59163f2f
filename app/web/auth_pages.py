"""Sign in with an API key, sign out."""

import time
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from app.core.deps import DatabaseDep
from app.core.settings import get_settings
from app.keys import service as keys
from app.web import session as web_session
from app.web.deps import UserDep, templates

router = APIRouter(include_in_schema=False)


def safe_next(target: str | None) -> str:
    """Only a path of this site: never an open redirect to another host."""
    if not target or not target.startswith("/") or target.startswith("//") or urlsplit(target).netloc:
        return "/jobs"
    return target


def same_origin(request: Request) -> bool:
    """A sign-in form posted from another site is refused (login CSRF)."""
    origin = request.headers.get("origin")
    return origin is None or urlsplit(origin).netloc == request.headers.get("host")


@router.get("/login")
def login_page(request: Request, next: str | None = None) -> Response:
    return templates.TemplateResponse(request, "login.html", {"next": safe_next(next), "user": None})


@router.post("/login")
def login(
    request: Request, db: DatabaseDep, api_key: Annotated[str, Form()], next: Annotated[str, Form()] = "/jobs"
) -> Response:
    settings = get_settings()
    with db.session() as session:
        key = keys.authenticate(session, api_key.strip()) if same_origin(request) else None
        if key is None:
            context = {"next": safe_next(next), "user": None, "error": "unknown, malformed or revoked key"}
            return templates.TemplateResponse(request, "login.html", context, status_code=401)
        expires = int(time.time() + settings.session_hours * 3600)
        cookie = web_session.issue(key, expires)
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(
        web_session.COOKIE,
        cookie,
        max_age=int(settings.session_hours * 3600),
        httponly=True,
        samesite="lax",
        secure=settings.env != "dev",
        path="/",
    )
    return response


@router.post("/logout")
def logout(user: UserDep) -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(web_session.COOKIE, path="/")
    return response
