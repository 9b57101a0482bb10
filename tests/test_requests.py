"""Unit tests of the request checks every JSON route shares (server/requests.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.requests import Request

from qinggan.server.errors import ApiError
from qinggan.server.requests import check_text, check_texts, read_object
from qinggan.settings import Settings

SETTINGS = Settings(max_text_chars=5, max_batch_texts=2, max_body_bytes=64)


def code_of(call: Any, *args: Any) -> tuple[int, str]:
    with pytest.raises(ApiError) as caught:
        call(*args)
    return caught.value.kind.status, caught.value.kind.code


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, (400, "invalid_text")), (3, (400, "invalid_text")), (" \n", (400, "invalid_text")),
     ("好" * 6, (413, "text_too_long"))],
)  # fmt: skip
def test_check_text_refuses(value: Any, expected: tuple[int, str]) -> None:
    assert code_of(check_text, value, "text", 5) == expected


def test_check_text_accepts_up_to_the_limit() -> None:
    assert check_text("好" * 5, "text", 5) == "好" * 5


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, (400, "invalid_text")), ("好", (422, "invalid_request")), ([], (400, "invalid_text")),
     (["a", "b", "c"], (422, "too_many_texts")), (["a", ""], (400, "invalid_text"))],
)  # fmt: skip
def test_check_texts_refuses(value: Any, expected: tuple[int, str]) -> None:
    assert code_of(check_texts, value, "texts", SETTINGS) == expected


def request(body: bytes, content_type: str = "application/json") -> Request:
    chunks = [body[:10], body[10:]]

    async def receive() -> dict[str, Any]:
        chunk = chunks.pop(0) if chunks else b""
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    headers = [(b"content-type", content_type.encode())]
    return Request({"type": "http", "method": "POST", "headers": headers}, receive)


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [(b'{"text": "x"}', "text/plain", (415, "unsupported_media_type")),
     (b"{nope", "application/json", (422, "invalid_json")),
     (b"[1, 2]", "application/json", (422, "invalid_request")),
     (b'{"text": "' + b"x" * 80 + b'"}', "application/json", (413, "body_too_large"))],
)  # fmt: skip
def test_read_object_refuses(body: bytes, content_type: str, expected: tuple[int, str]) -> None:
    def read() -> Any:
        return asyncio.run(read_object(request(body, content_type), SETTINGS, "{}"))

    assert code_of(read) == expected


def test_read_object_reads_a_json_object_in_chunks() -> None:
    body = b'{"text": "\xe5\xa5\xbd", "n": 1}'
    payload = asyncio.run(read_object(request(body, "application/vnd.x+json"), SETTINGS, "{}"))
    assert payload == {"text": "好", "n": 1}
