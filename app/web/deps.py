"""Who is looking at a page: the session cookie, checked on every request, and the CSRF check of writes.

Dashboard routes are marked `public` for the API's bearer-key dependency and authenticate here instead:
no cookie, a forged or expired one, or one whose API key was revoked sends the browser to sign in.
"""

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import anyio
from fastapi import Depends, Request
from fastapi.templating import Jinja2Templates

from app.core.auth import SAFE_METHODS, Principal, forbidden
from app.core.deps import DatabaseDep
from app.core.errors import AppError, ErrorCode
from app.core.sizes import human_bytes
from app.keys import service as keys
from app.models import Role
from app.scheduling import priorities
from app.web import session as web_session
from app.web import views

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")  # autoescapes .html
templates.env.globals["eta_text"] = views.eta_text
templates.env.globals["priority_name"] = priorities.name
templates.env.filters["bytes"] = human_bytes


class SignInRequired(Exception):
    """No valid session: the browser goes to /login (htmx requests get HX-Redirect)."""


@dataclass(frozen=True)
class WebUser:
    principal: Principal
    key_name: str
    csrf: str

    @property
    def can_write(self) -> bool:
        return self.principal.role != Role.VIEWER

    @property
    def is_admin(self) -> bool:
        return self.principal.role == Role.ADMIN


def csrf_from(request: Request, form: Any) -> str | None:
    return request.headers.get(web_session.CSRF_HEADER) or (
        form.get(web_session.CSRF_FIELD) if form else None
    )


async def web_user(request: Request, db: DatabaseDep) -> WebUser:
    cookie = request.cookies.get(web_session.COOKIE, "")
    claim = web_session.read(cookie, time.time()) if cookie else None
    if claim is None:
        raise SignInRequired

    def load_key() -> tuple[Principal, str] | None:
        with db.session() as session:
            key = keys.active_key(session, claim.key_id)
            if key is None or not web_session.matches(claim, key):
                return None
            return Principal.of(key), key.name

    # In a thread, never on the event loop: SQLite's write lock may be held by a request whose session
    # the loop must close (a blocked loop would wait for it until the busy timeout).
    found = await anyio.to_thread.run_sync(load_key)
    if found is None:
        raise SignInRequired
    principal, name = found
    if request.method not in SAFE_METHODS:
        form = None
        if request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")
        ):
            form = await request.form()
        if not web_session.csrf_ok(cookie, csrf_from(request, form)):
            raise AppError(403, ErrorCode.FORBIDDEN, "the form is missing its CSRF token or it is stale")
    request.state.principal = principal
    return WebUser(principal, name, web_session.csrf_token(cookie))


async def web_writer(user: Annotated[WebUser, Depends(web_user)]) -> WebUser:
    if not user.can_write:
        raise forbidden("this API key is read-only (viewer)")
    return user


UserDep = Annotated[WebUser, Depends(web_user)]
WriterDep = Annotated[WebUser, Depends(web_writer)]
