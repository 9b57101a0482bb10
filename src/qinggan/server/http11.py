"""The HTTP layer under the app: uvicorn's httptools protocol with limits on what one
client can hold.

- **Request head size.** uvicorn buffers the URL and header lines of a request without any
  limit (100 MB of headers grew the process by 118 MB; see docs/reliability.md). Past
  ``MAX_REQUEST_HEAD_BYTES`` this raises inside the parser callback: ``431`` and a closed
  connection.
- **Errors in the API's shape.** Bytes that are not HTTP get ``400`` with the JSON error
  body and security headers instead of uvicorn's plain text.
- **Read timeout.** uvicorn only times out idle keep-alive connections: a client that
  connects and sends nothing, or sends part of a request and stops, holds its connection
  (and mid-body a pending request) forever. Here a connection whose request is incomplete
  gets ``408`` and is closed when no bytes arrive for ``read_timeout_s`` (like nginx's
  client header/body timeouts: a slow upload that keeps sending is fine). The timer never
  runs while the request is complete and the app is answering it, nor while uvicorn has
  paused reading because the app has not consumed the body yet.

Importing this module needs httptools; the runner falls back to uvicorn's ``"auto"``
without it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ..errors import HEADERS_TOO_LARGE, INVALID_HTTP, REQUEST_TIMEOUT
from .errors import raw_error_response

log = logging.getLogger(__name__)

MAX_REQUEST_HEAD_BYTES = 65_536  # request line + headers; nginx allows 4 x 8 kB by default
INVALID_RESPONSE = raw_error_response(INVALID_HTTP, "the request is not valid HTTP/1.1")
HEAD_TOO_LARGE_RESPONSE = raw_error_response(
    HEADERS_TOO_LARGE, f"the request line and headers exceed {MAX_REQUEST_HEAD_BYTES} bytes"
)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's protocol plus a request-head cap, JSON 400/431 and a read timeout."""

    read_timeout_s = 30.0
    timeout_response = raw_error_response(REQUEST_TIMEOUT, "no request bytes for 30 s")
    _head_bytes = 0
    _head_too_large = False
    _reading = True  # a request (or the connection's first) has not fully arrived
    _read_timer: asyncio.TimerHandle | None = None

    # -- connection events: the read timer runs while a request is incomplete -----------

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

    # -- parser callbacks: track the request's progress and its head size ---------------

    def on_message_begin(self) -> None:
        self._head_bytes = 0
        self._reading = True
        super().on_message_begin()

    def on_message_complete(self) -> None:
        self._reading = False
        super().on_message_complete()

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value) + 4)
        super().on_header(name, value)

    def _count_head(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > MAX_REQUEST_HEAD_BYTES:
            self._head_too_large = True
            raise httptools.HttpParserError("request head too large")

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to bytes that do not parse, in the API's JSON error shape."""
        self.transport.write(HEAD_TOO_LARGE_RESPONSE if self._head_too_large else INVALID_RESPONSE)
        self.transport.close()

    # -- the read timer -------------------------------------------------------------------

    def _arm_read_timer(self) -> None:
        self._disarm_read_timer()
        self._read_timer = self.loop.call_later(self.read_timeout_s, self._read_timed_out)

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
            self.transport.write(self.timeout_response)
        log.info("closed a connection that sent no bytes for %g s", self.read_timeout_s)
        self.transport.close()


def with_read_timeout(read_timeout_s: float) -> type[BoundedHttpToolsProtocol]:
    """The protocol class with its own read timeout (uvicorn instantiates the class)."""
    message = f"no request bytes for {read_timeout_s:g} s"
    return type(
        "BoundedHttpToolsProtocol",
        (BoundedHttpToolsProtocol,),
        {
            "read_timeout_s": read_timeout_s,
            "timeout_response": raw_error_response(REQUEST_TIMEOUT, message),
        },
    )
