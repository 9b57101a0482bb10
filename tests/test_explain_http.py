"""``"explain": true`` over HTTP, against a real server: fields, order, limits, bad input."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from qinggan.bundle import Bundle
from serverproc import ServerProcess

MIXED = "服务很好，但是房间太差了"
LONG_LIMIT = 200_000
ODD = {
    "emoji": "😀😀😀",
    "one": "好",
    "mixed-script": "Good 服务很好 but 房间太差 😀 𠀀!",
    "astral-first": "😀𠀀很好，太差",
    "100k": "好，差。" * 25_000,
}


@pytest.fixture(scope="module")
def server(tiny_bundle: Bundle) -> Iterator[ServerProcess]:
    env = {"QINGGAN_MAX_TEXT_CHARS": str(LONG_LIMIT), "QINGGAN_MAX_BODY_BYTES": "4000000"}
    with ServerProcess(tiny_bundle.path, env=env) as proc:
        yield proc


def post(server: ServerProcess, path: str, body: object) -> httpx.Response:
    return httpx.post(f"{server.base_url}{path}", json=body, timeout=120)


def test_analyze_with_explain_adds_the_explanation(server: ServerProcess) -> None:
    body = post(server, "/analyze", {"text": MIXED, "explain": True}).json()
    assert list(body)[:6] == ["label", "confidence", "text", "label_zh", "scores", "truncated"]
    explanation = body["explanation"]
    assert explanation["method"] == "clause-alone" and explanation["mixed"] in (True, False)
    clauses = [s for s in explanation["spans"] if s["level"] == "clause"]
    assert [(s["start"], s["end"], s["text"]) for s in clauses] == [
        (0, 4, "服务很好"),
        (7, 12, "房间太差了"),
    ]
    assert clauses[0]["score"] > 0 > clauses[1]["score"]


@pytest.mark.parametrize("flag", [None, False])
def test_without_explain_the_response_is_as_before(server: ServerProcess, flag: object) -> None:
    request: dict[str, object] = {"text": MIXED}
    if flag is not None:
        request["explain"] = flag
    body = post(server, "/analyze", request).json()
    assert list(body) == ["label", "confidence", "text", "label_zh", "scores", "truncated"]


def test_batch_explains_each_text_in_order(server: ServerProcess) -> None:
    texts = ["很好", MIXED, "太差了"]
    results = post(server, "/v1/analyze", {"texts": texts, "explain": True}).json()["results"]
    assert [r["text"] for r in results] == texts
    for text, result in zip(texts, results, strict=True):
        for span in result["explanation"]["spans"]:
            assert text[span["start"] : span["end"]] == span["text"]
    plain = post(server, "/v1/analyze", {"texts": texts}).json()["results"]
    assert all("explanation" not in r for r in plain)


@pytest.mark.parametrize("flag", ["yes", 1, None, [True]])
def test_explain_must_be_a_boolean(server: ServerProcess, flag: object) -> None:
    response = post(server, "/analyze", {"text": MIXED, "explain": flag})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"


@pytest.mark.parametrize("text", ["", "   "])
def test_empty_text_with_explain_is_a_clear_400(server: ServerProcess, text: str) -> None:
    response = post(server, "/analyze", {"text": text, "explain": True})
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_text"


@pytest.mark.parametrize("name", list(ODD))
def test_odd_texts_get_sensible_spans_and_the_server_lives(
    server: ServerProcess, name: str
) -> None:
    text = ODD[name]
    response = post(server, "/analyze", {"text": text, "explain": True})
    assert response.status_code == 200, response.text
    spans = response.json()["explanation"]["spans"]
    assert spans
    for span in spans:
        assert text[span["start"] : span["end"]] == span["text"]
        assert -1 <= span["score"] <= 1
    assert httpx.get(f"{server.base_url}/health", timeout=10).status_code == 200


def test_openapi_documents_the_fields(server: ServerProcess) -> None:
    spec = httpx.get(f"{server.base_url}/openapi.json", timeout=10).text
    assert '"explain"' in spec and "ExplanationDoc" in spec and "SpanDoc" in spec
