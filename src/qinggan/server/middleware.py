"""The edge of the app, in one pure-ASGI middleware: security headers, the API key, and
request metrics (by route and status).

One plain ASGI layer, not a stack of ``BaseHTTPMiddleware``: it costs next to nothing per
request and sees every answer, including the 401 it sends itself.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ..errors import UNAUTHORIZED
from ..metrics import Metrics
from .errors import DOCS_HEADERS, STRICT_HEADERS, error_bytes

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PUBLIC_PATHS = frozenset({"/health", "/ready", "/", "/docs", "/openapi.json"})
PUBLIC_PREFIXES = ("/static/",)  # the web page's own files: it must load to ask for a key
UNAUTHORIZED_MESSAGE = (
    "an API key is required: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'"
)


def key_matches(headers: list[tuple[bytes, bytes]], key: bytes) -> bool:
    """Whether the request carries ``key`` as a bearer token or in ``X-API-Key``."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            if scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), key):
                return True
        elif name == b"x-api-key" and hmac.compare_digest(value.strip(), key):
            return True
    return False


class EdgeMiddleware:
    """Adds security headers, checks the API key, records request metrics.

    ``routes`` are the paths counted under their own name in metrics (others count as
    ``other``, so a scan of random URLs cannot grow the label set).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics,
        api_key: str | None,
        routes: frozenset[str],
        cors: bool = False,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.api_key = api_key.encode() if api_key else None
        self.routes = routes
        self.cors = cors

    def _needs_key(self, scope: Scope) -> bool:
        path = scope["path"]
        if self.api_key is None or path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
            return False
        if self.cors and scope["method"] == "OPTIONS":  # CORS preflight carries no credentials
            return False
        return not key_matches(scope["headers"], self.api_key)

    def _route_label(self, path: str) -> str:
        if path in self.routes:
            return path
        return "/static" if path.startswith("/static/") else "other"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        extra = DOCS_HEADERS if path == "/docs" else STRICT_HEADERS
        status = 500
        start = time.perf_counter()

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        try:
            if self._needs_key(scope):
                await _send_unauthorized(send_with_headers)
            else:
                await self.app(scope, receive, send_with_headers)
        finally:
            route = self._route_label(path)
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.request_duration.labels(route).observe(time.perf_counter() - start)


async def _send_unauthorized(send: Send) -> None:
    body = error_bytes(UNAUTHORIZED.code, UNAUTHORIZED_MESSAGE)
    await send(
        {
            "type": "http.response.start",
            "status": UNAUTHORIZED.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", b'Bearer realm="qinggan"'),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
