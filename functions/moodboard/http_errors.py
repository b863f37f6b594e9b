"""The HTTP edge of the domain errors: one JSON shape for every error response, installed once per app.

Every error body is `{"detail": "<one line for people>", "error": "<ExceptionClassName>", ...details}`
with the status the exception class carries (moodboard.errors). Request validation errors become a
422 whose detail names the offending field; request bodies are never echoed back or logged (a
base64 image would otherwise end up in the response). `BodyLimitMiddleware` refuses oversized
bodies with 413 before any parsing, by the declared Content-Length and by counting what arrives,
and JSON bodies nested deeper than moodboard.json_limits.MAX_JSON_DEPTH with 422.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from moodboard.errors import DecodersBusy, MoodboardError, NestingTooDeep, RequestTooLarge, Unauthorized
from moodboard.json_limits import MAX_JSON_DEPTH, too_deep

logger = logging.getLogger(__name__)

_RESERVED = ("detail", "error")
_HTTP_ERROR_NAMES = {
    400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed",
    409: "Conflict", 413: "RequestTooLarge", 415: "UnsupportedMediaType", 422: "InvalidQuery",
    429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable",
}


def error_payload(exc: MoodboardError) -> dict[str, Any]:
    """The JSON body for a domain error: detail, error class name, then the error's details."""
    body: dict[str, Any] = {"detail": exc.message, "error": type(exc).__name__}
    for key, value in exc.details.items():
        if key not in _RESERVED:
            body[key] = value
    return jsonable_encoder(body)


def error_response(exc: MoodboardError) -> JSONResponse:
    """A JSONResponse for a domain error, with WWW-Authenticate on 401 and Retry-After on a busy 503."""
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
    if isinstance(exc, DecodersBusy):
        headers = {"Retry-After": "1"}
    return JSONResponse(error_payload(exc), status_code=exc.status_code, headers=headers)


def _validation_detail(errors: list[dict[str, Any]]) -> str:
    """'field: message' for the first error, and how many more there are."""
    if not errors:
        return "the request is not valid"
    first = errors[0]
    location = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path", "form")]
    text = f"{'.'.join(location)}: {first.get('msg', 'invalid')}" if location else str(first.get("msg", "invalid"))
    if len(errors) > 1:
        text += f" (and {len(errors) - 1} more)"
    return text


def _public_errors(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Validation errors without the offending input (it may be an image) or internal context."""
    return [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in errors]


async def _moodboard_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, MoodboardError)
    level = logging.WARNING if exc.status_code >= 500 else logging.INFO
    logger.log(level, "%s %s -> %d %s: %s", request.method, request.url.path, exc.status_code,
               type(exc).__name__, exc.message)
    return error_response(exc)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    body = {"detail": _validation_detail(errors), "error": "RequestValidationError", "errors": _public_errors(errors)}
    return JSONResponse(jsonable_encoder(body), status_code=422)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else json.dumps(jsonable_encoder(exc.detail))
    body = {"detail": detail, "error": _HTTP_ERROR_NAMES.get(exc.status_code, "HTTPError")}
    return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse({"detail": "internal error", "error": "InternalError"}, status_code=500)


def install(app: FastAPI) -> None:
    """Register the one error mapping on an app: domain errors, validation errors, HTTP errors and
    anything unexpected all answer in the same JSON shape."""
    app.add_exception_handler(MoodboardError, _moodboard_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)


class BodyLimitMiddleware:
    """Refuse request bodies over `max_bytes` with 413 before the app parses a byte of them.

    The declared Content-Length is checked first; the body is then read and counted (chunked
    uploads declare nothing), and only a body within the limit is replayed to the app. Lambda hands
    the whole event body over at once, so this also bounds what API Gateway passed in.
    """

    def __init__(self, app: ASGIApp, max_bytes: int | Callable[[], int]) -> None:
        self.app = app
        self._max_bytes = max_bytes

    @property
    def max_bytes(self) -> int:
        """The limit now (a callable limit follows settings overrides)."""
        return self._max_bytes() if callable(self._max_bytes) else self._max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await self._refuse(scope, receive, send, declared, limit)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._refuse(scope, receive, send, None, limit)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if _is_json(scope) and too_deep(body):
            logger.info("%s %s -> 422 JSON nested over %d levels", scope.get("method"), scope.get("path"),
                        MAX_JSON_DEPTH)
            exc = NestingTooDeep(f"the JSON body nests arrays or objects more than {MAX_JSON_DEPTH} levels deep",
                                 details={"max_depth": MAX_JSON_DEPTH})
            await error_response(exc)(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, declared: int | None, limit: int) -> None:
        size = f"{declared} bytes" if declared is not None else "more than that"
        exc = RequestTooLarge(
            f"the request body is {size}; the limit is {limit} bytes",
            details={"max_bytes": limit} if declared is None else {"bytes": declared, "max_bytes": limit},
        )
        logger.info("%s %s -> 413 body over %d bytes", scope.get("method"), scope.get("path"), limit)
        await error_response(exc)(scope, receive, send)


def _is_json(scope: Scope) -> bool:
    """Whether the apps would parse this body as JSON (declared JSON, or no content type at all)."""
    for key, value in scope.get("headers", ()):
        if key == b"content-type":
            media_type = value.split(b";", 1)[0].strip().lower()
            return media_type in (b"", b"application/json") or media_type.endswith(b"+json")
    return True


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", ()):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
