"""Long texts over HTTP, end to end: a real ``qinggan serve`` on a free 127.0.0.1 port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from qinggan.bundle import Bundle
from serverproc import ServerProcess

OPENING = "酒店位置很好，服务很好。" * 8
LATE_VERDICT = OPENING + "差差差差差差，失望失望失望！" * 3  # 138 characters, > 64 tokens
FIELDS = ["label", "confidence", "text", "label_zh", "scores", "truncated"]


@pytest.fixture(scope="module")
def server(tiny_bundle: Bundle) -> Iterator[ServerProcess]:
    """The defaults: long texts read whole, 512 characters at most."""
    with ServerProcess(tiny_bundle.path) as srv:
        yield srv


def test_short_texts_answer_exactly_as_before(server: ServerProcess) -> None:
    with server.client() as client:
        one = client.post("/analyze", json={"text": "很好"}).json()
        many = client.post("/v1/analyze", json={"texts": ["很好", "太差"]}).json()
    assert list(one) == FIELDS and one["truncated"] is False
    assert [list(r) for r in many["results"]] == [FIELDS, FIELDS]


def test_a_long_text_is_read_whole_and_says_in_how_many_windows(server: ServerProcess) -> None:
    with server.client() as client:
        one = client.post("/analyze", json={"text": LATE_VERDICT}).json()
        many = client.post("/v1/analyze", json={"texts": ["很好", LATE_VERDICT]}).json()
    assert list(one) == [*FIELDS, "windows"]
    assert one["windows"] > 1 and one["truncated"] is False and one["label"] == "Negative"
    short, long = many["results"]
    assert "windows" not in short and long["windows"] == one["windows"]
    assert long["label"] == "Negative"


def test_the_api_reference_documents_windows(server: ServerProcess) -> None:
    with server.client() as client:
        schema = client.get("/openapi.json").json()["components"]["schemas"]["AnalyzeResult"]
    assert "windows" in schema["properties"] and "windows" not in schema.get("required", [])


def test_the_text_limit_stays_512_characters(server: ServerProcess) -> None:
    with server.client() as client:
        response = client.post("/analyze", json={"text": "好" * 513})
        assert client.get("/health").status_code == 200
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "text_too_long"


def test_a_larger_limit_answers_a_100k_character_document_whole(tiny_bundle: Bundle) -> None:
    document = ("房间干净，服务很好。" * 5 + "早餐太差，失望！") * 1730
    assert len(document) > 100_000
    env = {"QINGGAN_MAX_TEXT_CHARS": "200000", "QINGGAN_MAX_BATCH_SIZE": "8"}
    with ServerProcess(tiny_bundle.path, env=env) as srv, srv.client() as client:
        response = client.post("/analyze", json={"text": document}, timeout=120)
        health = client.get("/health")
        short = client.post("/analyze", json={"text": "很好"}).json()
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["windows"] > 500 and body["truncated"] is False and body["text"] == document
    assert health.status_code == 200 and short["label"] == "Positive"


def test_truncate_cuts_as_before(tiny_bundle: Bundle) -> None:
    with (
        ServerProcess(tiny_bundle.path, args=["--long-texts", "truncate"]) as srv,
        srv.client() as client,
    ):
        one = client.post("/analyze", json={"text": LATE_VERDICT}).json()
        info = client.get("/info").json()
    assert list(one) == FIELDS and one["truncated"] is True and one["label"] == "Positive"
    assert info["model"]["long_texts"] == "truncate"


def test_a_bad_setting_stops_the_server(tiny_bundle: Bundle) -> None:
    srv = ServerProcess(tiny_bundle.path, env={"QINGGAN_LONG_TEXTS": "chunks"})
    with pytest.raises(RuntimeError, match="long_texts must be one of window, truncate"):
        srv.start()
    srv.close()
