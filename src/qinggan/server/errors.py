"""The HTTP side of the error table (:mod:`qinggan.errors`): error bodies, responses and
the app's exception handlers.

Every error is JSON ``{"error": {"code": ..., "message": ...}}`` and never carries a stack
trace, exception text or file path; its status, code and Retry-After come from its
:class:`~qinggan.errors.ErrorKind`. The security headers live here too because both the
app (through the edge middleware) and the raw HTTP layer (:mod:`.http11`) send them.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import orjson
from fastapi.exceptions import RequestValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from ..errors import INTERNAL_ERROR, INVALID_REQUEST, ErrorKind, kind_for_status

log = logging.getLogger(__name__)

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
# The API reference page (/docs) runs Swagger UI from the fastapi-offline package,
# served locally; Swagger UI sets inline styles, so that page alone allows them.
DOCS_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
BASE_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]
STRICT_HEADERS = [*BASE_HEADERS, (b"content-security-policy", CSP.encode())]
DOCS_HEADERS = [*BASE_HEADERS, (b"content-security-policy", DOCS_CSP.encode())]
# Framework errors that carry their own wording; others read as their code.
FRAMEWORK_MESSAGES = {404: "no such route; see /docs", 405: "method not allowed on this route"}


class ApiError(Exception):
    """An error answer: a kind from the table, a human message, maybe extra headers."""

    def __init__(
        self, kind: ErrorKind, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.headers = {**kind.headers, **(headers or {})}

    def response(self) -> Response:
        return error_response(self.kind, self.message, self.headers)


def error_bytes(code: str, message: str) -> bytes:
    """The API's JSON error body."""
    return orjson.dumps({"error": {"code": code, "message": message}})


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def error_response(
    kind: ErrorKind, message: str, headers: dict[str, str] | None = None
) -> Response:
    """The JSON error answer of ``kind`` (with its Retry-After, if it has one)."""
    return Response(
        error_bytes(kind.code, message),
        kind.status,
        {**kind.headers, **(headers or {})},
        media_type="application/json",
    )


def raw_error_response(kind: ErrorKind, message: str) -> bytes:
    """A complete HTTP/1.1 error response for the layer below the app: the API's JSON
    error shape and security headers, then the connection is closed."""
    body = error_bytes(kind.code, message)
    status = f"{kind.status} {HTTPStatus(kind.status).phrase}".encode()
    headers = b"".join(b"%s: %s\r\n" % pair for pair in STRICT_HEADERS)
    return (
        b"HTTP/1.1 %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
        b"%sconnection: close\r\n\r\n%s" % (status, len(body), headers, body)
    )


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return exc.response()


async def _framework_error(request: Request, exc: Exception) -> Response:
    """404, 405 and any other HTTP error the framework raises, in the API's shape."""
    assert isinstance(exc, StarletteHTTPException)
    kind = kind_for_status(exc.status_code)
    if kind is None:
        kind = ErrorKind(exc.status_code, "http_error", "")
    message = FRAMEWORK_MESSAGES.get(exc.status_code, kind.code.replace("_", " "))
    return error_response(kind, message, dict(exc.headers or {}))


async def _validation_error(request: Request, exc: Exception) -> Response:
    return error_response(INVALID_REQUEST, "the request does not match the schema")


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    # Starlette runs this handler in its outermost middleware, outside the edge
    # middleware, so the security headers must be added here.
    headers = {name.decode(): value.decode() for name, value in STRICT_HEADERS}
    return error_response(INTERNAL_ERROR, "internal server error", headers)


def install_error_handlers(app: Starlette) -> None:
    """Answer every error the app or the framework raises as JSON from the table."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _framework_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)
