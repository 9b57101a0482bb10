"""The error table is the one source of every error answer's status, code and Retry-After."""

from __future__ import annotations

from pathlib import Path

import pytest

from qinggan import batching
from qinggan.errors import ERROR_TABLE, ErrorKind, error_table_markdown, kind_for_status
from qinggan.server.errors import ApiError, raw_error_response

API_DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"
BEGIN = "<!-- error table:"
END = "<!-- end of error table -->"


def test_docs_show_exactly_the_table() -> None:
    text = API_DOC.read_text(encoding="utf-8")
    section = text[text.index(BEGIN) : text.index(END)]
    assert section.split("\n", 1)[1] == error_table_markdown()


def test_codes_are_unique_and_statuses_in_order() -> None:
    codes = [kind.code for kind in ERROR_TABLE]
    assert len(codes) == len(set(codes))
    statuses = [kind.status for kind in ERROR_TABLE]
    assert statuses == sorted(statuses)


def test_only_try_again_errors_carry_retry_after() -> None:
    for kind in ERROR_TABLE:
        assert (kind.retry_after_s is not None) == (kind.status == 503), kind
        assert ApiError(kind, "m").headers == kind.headers


@pytest.mark.parametrize(
    ("status", "code"),
    [(400, "invalid_text"), (404, "not_found"), (405, "method_not_allowed"),
     (413, "body_too_large"), (422, "invalid_request"), (503, "unavailable")],
)  # fmt: skip
def test_framework_errors_map_to_their_default_kind(status: int, code: str) -> None:
    kind = kind_for_status(status)
    assert kind is not None and kind.code == code
    assert kind_for_status(418) is None


def test_every_batcher_error_is_a_kind_of_the_table() -> None:
    errors = [batching.QueueFull, batching.EngineUnavailable, batching.DeadlineExceeded,
              batching.ClientGone, batching.InferenceFailed]  # fmt: skip
    assert [error.kind.code for error in errors] == [
        "overloaded", "unavailable", "timeout", "client_closed_request", "internal_error"
    ]  # fmt: skip
    assert all(error.kind in ERROR_TABLE for error in errors)


def test_raw_responses_speak_http_with_the_json_body() -> None:
    kind = next(k for k in ERROR_TABLE if k.code == "headers_too_large")
    raw = raw_error_response(kind, "too big")
    assert raw.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert raw.endswith(b'{"error":{"code":"headers_too_large","message":"too big"}}')
    assert isinstance(kind, ErrorKind)
