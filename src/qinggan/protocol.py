"""The HTTP layer under the app: uvicorn's protocol with limits, plus the security headers
and JSON error bytes that both it and the app's edge middleware send."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson

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


def error_bytes(code: str, message: str) -> bytes:
    """The API's JSON error body."""
    return orjson.dumps({"error": {"code": code, "message": message}})


MAX_REQUEST_HEAD_BYTES = 65_536  # request line + headers; nginx allows 4 x 8 kB by default


def raw_error_response(status: bytes, code: str, message: str) -> bytes:
    """A complete error response for the protocol layer (below the app): the API's JSON
    error shape and security headers, then the connection is closed."""
    body = error_bytes(code, message)
    headers = b"".join(b"%s: %s\r\n" % pair for pair in STRICT_HEADERS)
    return (
        b"HTTP/1.1 %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
        b"%sconnection: close\r\n\r\n%s" % (status, len(body), headers, body)
    )


def bounded_http_protocol(read_timeout_s: float = 30.0) -> Any:
    """uvicorn's httptools protocol with limits on what one client can hold ("auto" without
    httptools).

    - **Request head size.** uvicorn buffers the URL and header lines of a request without
      any limit (100 MB of headers grew the process by 118 MB; see docs/reliability.md).
      Past ``MAX_REQUEST_HEAD_BYTES`` this raises inside the parser callback: ``431`` and a
      closed connection.
    - **Errors in the API's shape.** Bytes that are not HTTP get ``400`` with the JSON error
      body and security headers instead of uvicorn's plain text.
    - **Read timeout.** uvicorn only times out idle keep-alive connections: a client that
      connects and sends nothing, or sends part of a request and stops, holds its
      connection (and mid-body a pending request) forever. Here a connection whose request
      is incomplete gets ``408`` and is closed when no bytes arrive for ``read_timeout_s``
      (like nginx's client header/body timeouts: a slow upload that keeps sending is fine).
      The timer never runs while the request is complete and the app is answering it, nor
      while uvicorn has paused reading because the app has not consumed the body yet.
    """
    try:
        import httptools
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        return "auto"

    timeout_response = raw_error_response(
        b"408 Request Timeout", "request_timeout", f"no request bytes for {read_timeout_s:g} s"
    )
    invalid_response = raw_error_response(
        b"400 Bad Request", "invalid_http", "the request is not valid HTTP/1.1"
    )
    head_too_large_response = raw_error_response(
        b"431 Request Header Fields Too Large",
        "headers_too_large",
        f"the request line and headers exceed {MAX_REQUEST_HEAD_BYTES} bytes",
    )

    class BoundedHttpToolsProtocol(HttpToolsProtocol):
        _head_bytes = 0
        _head_too_large = False
        _reading = True  # a request (or the connection's first) has not fully arrived
        _read_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm_read_timer()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)  # parser callbacks update ``_reading``
            if self._reading:
                self._arm_read_timer()
            else:
                self._disarm_read_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm_read_timer()
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            self._head_bytes = 0
            self._reading = True
            super().on_message_begin()

        def on_message_complete(self) -> None:
            self._reading = False
            super().on_message_complete()

        def on_url(self, url: bytes) -> None:
            self._count(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count(len(name) + len(value) + 4)
            super().on_header(name, value)

        def _count(self, size: int) -> None:
            self._head_bytes += size
            if self._head_bytes > MAX_REQUEST_HEAD_BYTES:
                self._head_too_large = True
                raise httptools.HttpParserError("request head too large")

        def send_400_response(self, msg: str) -> None:
            """uvicorn's answer to bytes that do not parse, in the API's JSON error shape."""
            self.transport.write(
                head_too_large_response if self._head_too_large else invalid_response
            )
            self.transport.close()

        def _arm_read_timer(self) -> None:
            self._disarm_read_timer()
            self._read_timer = self.loop.call_later(read_timeout_s, self._read_timed_out)

        def _disarm_read_timer(self) -> None:
            if self._read_timer is not None:
                self._read_timer.cancel()
                self._read_timer = None

        def _read_timed_out(self) -> None:
            self._read_timer = None
            if self.transport.is_closing() or not self._reading:
                return
            if self.flow.read_paused:  # waiting on the app, not on the client
                self._arm_read_timer()
                return
            if self.cycle is None or not self.cycle.response_started:
                self.transport.write(timeout_response)
            log.info("closed a connection that sent no bytes for %g s", read_timeout_s)
            self.transport.close()

    return BoundedHttpToolsProtocol
