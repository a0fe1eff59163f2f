"""Errors as HTTP answers: every error becomes RFC 9457 `application/problem+json`. Only the HTTP
layer imports this module; the errors themselves (app/core/errors.py) know nothing of FastAPI."""

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.core.errors import AppError, ErrorCode, FieldError
from app.core.naming import NAME_PATTERN, NAME_RULE

log = logging.getLogger("errors.system")
validation_log = logging.getLogger("errors.validation")

PROBLEM_JSON = "application/problem+json"


def _reason(error: Any) -> str:
    """Pydantic's message, with the name rule in words instead of its regex."""
    if (
        error.get("type") == "string_pattern_mismatch"
        and (error.get("ctx") or {}).get("pattern") == NAME_PATTERN
    ):
        return f"must be {NAME_RULE}"
    return str(error["msg"])


def problem(request: Request, status: int, code: str, detail: str, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"https://trainyard.dev/problems/{code.lower().replace('_', '-')}",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        "code": code,
        "request_id": getattr(request.state, "request_id", None),
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


def _field_name(loc: tuple[Any, ...]) -> str:
    # FastAPI prefixes the location ("body", "query", ...); users think in field names.
    parts = [str(p) for p in loc[1:]] if loc and loc[0] in {"body", "query", "path", "header"} else list(loc)
    return ".".join(str(p) for p in parts) or str(loc[0] if loc else "request")


def register_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def app_error(request: Request, exc: AppError) -> JSONResponse:
        if exc.status >= 500:
            log.error("request failed: %s", exc)
        else:
            validation_log.info("rejected %s %s: %s", request.method, request.url.path, exc)
        extra = {"errors": [e.as_dict() for e in exc.errors]} if exc.errors else {}
        response = problem(request, exc.status, exc.code, exc.detail, **extra)
        response.headers.update(exc.headers)
        return response

    @app.exception_handler(RequestValidationError)
    async def request_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [FieldError(_field_name(tuple(e["loc"])), _reason(e)) for e in exc.errors()]
        validation_log.info("rejected %s %s: %s", request.method, request.url.path, errors)
        detail = "; ".join(f"{e.field}: {e.reason}" for e in errors)
        return problem(request, 422, ErrorCode.VALIDATION_ERROR, detail, errors=[e.as_dict() for e in errors])

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {401: ErrorCode.UNAUTHORIZED, 404: ErrorCode.NOT_FOUND, 413: ErrorCode.PAYLOAD_TOO_LARGE}
        code = codes.get(exc.status_code, ErrorCode.VALIDATION_ERROR)
        response = problem(request, exc.status_code, code, str(exc.detail))
        response.headers.update(exc.headers or {})
        return response

    @app.exception_handler(Exception)
    async def unhandled(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(request, 500, ErrorCode.INTERNAL_ERROR, "internal error; see the server log")
