"""Exception types shared by every qinggan module, and the service's error table.

Every error a user can cause derives from :class:`QingganError`, so the CLI and the
server can turn it into a one-line message instead of a traceback. :data:`ERROR_TABLE`
lists every error the HTTP service answers with (status, code, Retry-After); it imports
nothing heavy, so the batcher and the HTTP layer name its kinds too.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass


class QingganError(Exception):
    """Base class for errors caused by input, configuration or a bad model bundle."""


class BundleError(QingganError):
    """A model bundle is missing, incomplete, tampered with or inconsistent."""


class TextTooLongError(QingganError):
    """A text has more tokens than the model accepts and truncation is disabled."""

    def __init__(self, index: int, tokens: int, limit: int) -> None:
        super().__init__(
            f"text #{index} has {tokens} tokens, more than the model's limit of {limit} "
            "(enable truncation to score it anyway)"
        )
        self.index = index
        self.tokens = tokens
        self.limit = limit


class MissingExtraError(QingganError):
    """An optional feature needs an extra that is not installed."""

    def __init__(self, feature: str, extra: str, module: str) -> None:
        super().__init__(f"{feature} needs the '{module}' package: pip install 'qinggan[{extra}]'")
        self.extra = extra


def run_main(main: Callable[[], object]) -> None:
    """Run a command's entry point as users expect: a :class:`QingganError` prints one line
    ``error: ...`` and exits 1, Ctrl+C exits 130, and a closed output pipe exits 0."""
    try:
        main()
    except QingganError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except BrokenPipeError:
        raise SystemExit(0) from None


# -- the error table -----------------------------------------------------------------------
#
# Every error the service can answer with is one kind below: its HTTP status, its stable
# code (clients match on it) and, for "try again" errors, the Retry-After it carries. The
# app, the raw HTTP layer and the batcher all name a kind, never a status number, and
# docs/api.md's table is rendered from this one (tests/test_errors.py keeps them equal).

RETRY_AFTER_S = 1


@dataclass(frozen=True, slots=True)
class ErrorKind:
    """One row of the error table: what the client gets, and when."""

    status: int
    code: str
    when: str
    retry_after_s: int | None = None

    @property
    def headers(self) -> dict[str, str]:
        """The headers this kind of error always carries (Retry-After, or none)."""
        if self.retry_after_s is None:
            return {}
        return {"Retry-After": str(self.retry_after_s)}


INVALID_TEXT = ErrorKind(
    400,
    "invalid_text",
    "`text` (or `texts`) missing, a text not a string, empty or whitespace only; `texts` is `[]`",
)
INVALID_LABEL = ErrorKind(
    400,
    "invalid_label",
    "`/v1/feedback`: `label` (or `predicted`) missing or not one of the model's labels",
)
INVALID_HTTP = ErrorKind(
    400, "invalid_http", "the bytes are not an HTTP/1.1 request (the connection is closed)"
)
UNAUTHORIZED = ErrorKind(
    401,
    "unauthorized",
    "an API key is set and the request has neither `Authorization: Bearer KEY` nor "
    "`X-API-Key: KEY` with the right key (also sends `WWW-Authenticate`)",
)
ADMIN_DISABLED = ErrorKind(
    403,
    "admin_disabled",
    "an admin route (`/v1/admin/...`) on a server that runs without an API key: admin "
    "routes need one",
)
NOT_FOUND = ErrorKind(404, "not_found", "no such route")
FEEDBACK_OFF = ErrorKind(
    404, "feedback_off", "`/v1/feedback*` on a server started without `--feedback-db`"
)
METHOD_NOT_ALLOWED = ErrorKind(
    405,
    "method_not_allowed",
    "route exists, method does not (`Allow` header lists the right ones)",
)
REQUEST_TIMEOUT = ErrorKind(
    408,
    "request_timeout",
    "the client sent nothing for `read_timeout_s` while its request was incomplete "
    "(the connection is closed)",
)
BODY_TOO_LARGE = ErrorKind(
    413,
    "body_too_large",
    "the body is over `max_body_bytes` (checked from `Content-Length` and again while "
    "reading, so an oversized chunked body is cut off early)",
)
TEXT_TOO_LONG = ErrorKind(413, "text_too_long", "a text has more than `max_text_chars` characters")
RELOAD_IN_PROGRESS = ErrorKind(
    409, "reload_in_progress", "`/v1/admin/reload` while another reload is still running"
)
UNSUPPORTED_MEDIA_TYPE = ErrorKind(
    415,
    "unsupported_media_type",
    "`Content-Type` is not `application/json` (or `application/*+json`)",
)
INVALID_REQUEST = ErrorKind(
    422, "invalid_request", "the body is not an object, or `texts` is not a list"
)
INVALID_JSON = ErrorKind(422, "invalid_json", "the body is not valid UTF-8 JSON")
TOO_MANY_TEXTS = ErrorKind(422, "too_many_texts", "`texts` has more than `max_batch_texts` items")
HEADERS_TOO_LARGE = ErrorKind(
    431,
    "headers_too_large",
    "the request line and headers exceed 64 kB (the connection is closed)",
)
CLIENT_GONE = ErrorKind(
    499,
    "client_closed_request",
    "the client hung up before its answer was ready (logged; nobody receives it)",
)
INTERNAL_ERROR = ErrorKind(
    500,
    "internal_error",
    "the model raised on the batch holding this request (other batches are unaffected), "
    "or the server failed unexpectedly",
)
RELOAD_FAILED = ErrorKind(
    500,
    "reload_failed",
    "`/v1/admin/reload` could not load, verify or warm up the configured model; the message "
    "says why, and the previous model keeps serving",
)
UNAVAILABLE = ErrorKind(
    503,
    "unavailable",
    "the model worker is not running (died, or the server is shutting down) or the model "
    "is not ready yet",
    RETRY_AFTER_S,
)
OVERLOADED = ErrorKind(
    503, "overloaded", "the queue is full; retry after `Retry-After` seconds", RETRY_AFTER_S
)
UNHEALTHY = ErrorKind(
    503, "unhealthy", "from `/health` and `/ready`: the model worker died", RETRY_AFTER_S
)
NOT_READY = ErrorKind(
    503, "not_ready", "from `/ready`: the model is not loaded and warmed yet", RETRY_AFTER_S
)
FEEDBACK_UNAVAILABLE = ErrorKind(
    503,
    "feedback_unavailable",
    "the corrections store cannot commit or read right now (disk full, read-only, database "
    "down); nothing was stored, and analyses are not affected",
    RETRY_AFTER_S,
)
TIMEOUT = ErrorKind(504, "timeout", "the request waited longer than `request_timeout_s`")

# In order of status; the first kind of each status is its default (see kind_for_status).
ERROR_TABLE: tuple[ErrorKind, ...] = (
    INVALID_TEXT,
    INVALID_LABEL,
    INVALID_HTTP,
    UNAUTHORIZED,
    ADMIN_DISABLED,
    NOT_FOUND,
    FEEDBACK_OFF,
    METHOD_NOT_ALLOWED,
    REQUEST_TIMEOUT,
    RELOAD_IN_PROGRESS,
    BODY_TOO_LARGE,
    TEXT_TOO_LONG,
    UNSUPPORTED_MEDIA_TYPE,
    INVALID_REQUEST,
    INVALID_JSON,
    TOO_MANY_TEXTS,
    HEADERS_TOO_LARGE,
    CLIENT_GONE,
    INTERNAL_ERROR,
    RELOAD_FAILED,
    UNAVAILABLE,
    OVERLOADED,
    UNHEALTHY,
    NOT_READY,
    FEEDBACK_UNAVAILABLE,
    TIMEOUT,
)


def kind_for_status(status: int) -> ErrorKind | None:
    """The default kind of an HTTP status (for errors raised by the web framework itself,
    such as 404 and 405), or ``None`` if the table has none."""
    return next((kind for kind in ERROR_TABLE if kind.status == status), None)


def error_table_markdown() -> str:
    """The table as docs/api.md shows it."""
    rows = ["| status | code | Retry-After | when |", "|---|---|---|---|"]
    for kind in ERROR_TABLE:
        retry = f"{kind.retry_after_s} s" if kind.retry_after_s is not None else ""
        rows.append(f"| {kind.status} | `{kind.code}` | {retry} | {kind.when} |")
    return "\n".join(rows) + "\n"
