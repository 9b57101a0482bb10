"""Reading and checking request bodies, shared by every route that takes JSON.

The body is read by hand so the byte limit holds *while* reading, parsed with orjson and
checked field by field, each failure an :class:`~.errors.ApiError` of the right kind.
A new route that takes texts reuses :func:`read_object` and :func:`check_text` /
:func:`check_texts` and answers exactly like ``/analyze``.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request

from ..errors import (
    BODY_TOO_LARGE,
    CLIENT_GONE,
    INVALID_JSON,
    INVALID_REQUEST,
    INVALID_TEXT,
    TEXT_TOO_LONG,
    TOO_MANY_TEXTS,
    UNSUPPORTED_MEDIA_TYPE,
)
from ..settings import Settings
from .errors import ApiError


def _is_json(content_type: str) -> bool:
    mime = content_type.partition(";")[0].strip().lower()
    return mime == "application/json" or (
        mime.startswith("application/") and mime.endswith("+json")
    )


async def read_json(request: Request, limit: int) -> Any:
    """The body as JSON; 415 unless JSON, 413 past ``limit`` bytes (checked while reading)."""
    if not _is_json(request.headers.get("content-type", "")):
        raise ApiError(
            UNSUPPORTED_MEDIA_TYPE, "send a JSON body with 'Content-Type: application/json'"
        )
    too_large = ApiError(BODY_TOO_LARGE, f"the request body is over {limit} bytes")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
    except ClientDisconnect:
        raise ApiError(CLIENT_GONE, "the client went away") from None
    try:
        return orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError:
        raise ApiError(INVALID_JSON, "the request body is not valid JSON") from None


async def read_object(request: Request, settings: Settings, example: str) -> dict[str, Any]:
    """The body as a JSON object within ``settings.max_body_bytes`` (see :func:`read_json`);
    422 naming ``example`` otherwise."""
    payload = await read_json(request, settings.max_body_bytes)
    if not isinstance(payload, dict):
        raise ApiError(INVALID_REQUEST, f"the body must be an object: {example}")
    return payload


def check_text(value: Any, where: str, limit: int) -> str:
    """``value`` if it is a non-blank string of at most ``limit`` characters; else 400/413."""
    if value is None:
        raise ApiError(INVALID_TEXT, f"'{where}' is missing")
    if not isinstance(value, str):
        raise ApiError(INVALID_TEXT, f"'{where}' must be a string")
    if not value.strip():
        raise ApiError(INVALID_TEXT, f"'{where}' is empty or only whitespace")
    if len(value) > limit:
        raise ApiError(
            TEXT_TOO_LONG, f"'{where}' has {len(value)} characters; the limit is {limit}"
        )
    return value


def check_texts(value: Any, where: str, settings: Settings) -> list[str]:
    """A non-empty list of at most ``max_batch_texts`` valid texts (see :func:`check_text`)."""
    if value is None:
        raise ApiError(INVALID_TEXT, f"'{where}' is missing")
    if not isinstance(value, list):
        raise ApiError(INVALID_REQUEST, f"'{where}' must be a list of strings")
    if not value:
        raise ApiError(INVALID_TEXT, f"'{where}' is empty")
    if len(value) > settings.max_batch_texts:
        raise ApiError(
            TOO_MANY_TEXTS,
            f"'{where}' has {len(value)} items; the limit is {settings.max_batch_texts}",
        )
    for i, text in enumerate(value):
        check_text(text, f"{where}[{i}]", settings.max_text_chars)
    return value
