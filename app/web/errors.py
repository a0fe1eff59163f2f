"""Errors on dashboard routes are pages (or inline fragments for htmx), not problem+json; the API's
handlers stay in charge of every other route."""

from http import HTTPStatus
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.core.errors import AppError
from app.web.deps import SignInRequired, templates


def web_endpoint(endpoint: Any) -> Any:
    """Mark an endpoint as a dashboard route: no API key (the session cookie instead), HTML errors."""
    endpoint.__trainyard_public__ = True
    endpoint.__trainyard_web__ = True
    return endpoint


def is_web(request: Request) -> bool:
    return bool(getattr(request.scope.get("endpoint"), "__trainyard_web__", False))


def is_htmx(request: Request) -> bool:
    return request.headers.get("HX-Request") == "true"


def error_page(request: Request, status: int, detail: str) -> Response:
    template = "_problem.html" if is_htmx(request) else "error.html"
    context = {"status": status, "title": HTTPStatus(status).phrase, "detail": detail, "user": None}
    return templates.TemplateResponse(request, template, context, status_code=status)


def sign_in(request: Request) -> Response:
    if is_htmx(request):
        return Response(status_code=401, headers={"HX-Redirect": "/login"})
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target)}", status_code=303)


def install(app: FastAPI) -> None:
    """Put the dashboard's rendering in front of the API's handlers (registered before)."""
    api_handlers = dict(app.exception_handlers)

    def delegate(kind: type[Exception], render: Any) -> None:
        async def handler(request: Request, exc: Exception) -> Response:
            if is_web(request):
                return render(request, exc)
            response: Response = await api_handlers[kind](request, exc)
            return response

        app.add_exception_handler(kind, handler)

    delegate(AppError, lambda r, e: error_page(r, e.status, e.detail))
    delegate(StarletteHTTPException, lambda r, e: error_page(r, e.status_code, str(e.detail)))
    delegate(
        RequestValidationError,
        lambda r, e: error_page(r, 422, "; ".join(f"{x['loc'][-1]}: {x['msg']}" for x in e.errors())),
    )
    app.add_exception_handler(SignInRequired, lambda r, e: sign_in(r))
