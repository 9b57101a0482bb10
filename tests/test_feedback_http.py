"""``POST /v1/feedback`` and ``GET /v1/feedback/stats``: the same rules as ``/analyze``,
503 (and nothing stored) when the store fails while analyses go on, durability across a
SIGKILL, and several server processes writing one store."""

from __future__ import annotations

import json
import signal
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

import feedback_support
import qinggan
from qinggan.bundle import Bundle
from qinggan.feedback import open_store
from qinggan.feedback.sqlite import SQLiteStore
from qinggan.server import create_app
from qinggan.settings import Settings
from serverproc import ServerProcess

postgres_server = feedback_support.postgres_server
pg_url = feedback_support.pg_url

POSITIVE = "酒店服务很好，房间干净，非常满意"
NEGATIVE = "质量太差了，很失望，糟糕"
API_KEY = "feedback-key-1"
LIMIT = 40


@pytest.fixture(scope="module")
def classifier(tiny_bundle: Bundle) -> qinggan.Classifier:
    return qinggan.load(tiny_bundle.path, threads=1)


def app_client(model: Any, store: str | None, **options: Any) -> TestClient:
    settings_ = Settings(feedback_db=store, max_text_chars=LIMIT, **options)
    return TestClient(create_app(settings_, model), raise_server_exceptions=False)


@pytest.fixture(scope="module")
def client(
    classifier: qinggan.Classifier, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    db = tmp_path_factory.mktemp("fb") / "corrections.db"
    with app_client(classifier, str(db)) as c:
        yield c


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"]["code"] == code
    assert "Traceback" not in response.text and "/tmp/" not in response.text


def count(client: TestClient, **headers: str) -> int:
    return int(client.get("/v1/feedback/stats", headers=headers).json()["count"])


def test_off_by_default_with_a_clear_404(classifier: qinggan.Classifier) -> None:
    with app_client(classifier, None) as c:
        assert c.get("/info").json()["feedback"] is False
        assert not any("feedback" in path for path in c.get("/openapi.json").json()["paths"])
        for response in (
            c.post("/v1/feedback", json={"text": POSITIVE, "label": "Negative"}),
            c.get("/v1/feedback/stats"),
        ):
            assert_error(response, 404, "feedback_off")
            assert "--feedback-db" in response.json()["error"]["message"]


def test_a_correction_is_stored_with_what_the_model_said(client: TestClient) -> None:
    assert client.get("/info").json()["feedback"] is True
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/feedback", "/v1/feedback/stats"} <= set(paths)
    before = count(client)
    first = client.post("/v1/feedback", json={"text": POSITIVE, "label": "Negative"})
    assert first.status_code == 201, first.text
    body = first.json()
    assert (body["text"], body["label"], body["predicted"]) == (POSITIVE, "Negative", "Positive")
    assert 0.5 < body["confidence"] <= 1
    again = client.post(
        "/v1/feedback",
        json={"text": POSITIVE, "label": "Positive", "predicted": "Negative", "confidence": 0.9},
    )
    assert again.status_code == 201 and again.json()["id"] == body["id"]
    assert (again.json()["predicted"], again.json()["confidence"]) == ("Negative", 0.9)
    stats = client.get("/v1/feedback/stats").json()
    assert stats["count"] == before + 1 and stats["by_label"]["Positive"] >= 1
    assert stats["since"].endswith("+00:00")
    assert 'qinggan_feedback_writes_total{outcome="ok"} 2.0' in client.get("/metrics").text


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"label": "Negative"}, 400, "invalid_text"),
        ({"text": "", "label": "Negative"}, 400, "invalid_text"),
        ({"text": "  \n", "label": "Negative"}, 400, "invalid_text"),
        ({"text": 5, "label": "Negative"}, 400, "invalid_text"),
        ({"text": "a\x00b", "label": "Negative"}, 400, "invalid_text"),
        ({"text": "好" * (LIMIT + 1), "label": "Negative"}, 413, "text_too_long"),
        ({"text": "好"}, 400, "invalid_label"),
        ({"text": "好", "label": "Neutral"}, 400, "invalid_label"),
        ({"text": "好", "label": ["Positive"]}, 400, "invalid_label"),
        ({"text": "好", "label": "Positive", "predicted": "Meh"}, 400, "invalid_label"),
        ({"text": "好", "label": "Positive", "confidence": 1.5}, 422, "invalid_request"),
        ({"text": "好", "label": "Positive", "confidence": "high"}, 422, "invalid_request"),
        ({"text": "好", "label": "Positive", "confidence": True}, 422, "invalid_request"),
        (["好", "Positive"], 422, "invalid_request"),
    ],
)
def test_bad_corrections_are_refused_and_not_stored(
    client: TestClient, body: Any, status: int, code: str
) -> None:
    before = count(client)
    assert_error(client.post("/v1/feedback", json=body), status, code)
    assert count(client) == before


def test_body_errors_match_analyze(client: TestClient) -> None:
    headers = {"content-type": "application/json"}
    assert_error(
        client.post("/v1/feedback", content=b"{oops", headers=headers), 422, "invalid_json"
    )
    assert_error(client.post("/v1/feedback", content=b"text=1"), 415, "unsupported_media_type")
    assert client.get("/v1/feedback").status_code == 405


def test_the_api_key_guards_both_routes(classifier: qinggan.Classifier, tmp_path: Path) -> None:
    with app_client(classifier, str(tmp_path / "fb.db"), api_key=API_KEY) as c:
        correction = {"text": NEGATIVE, "label": "Positive"}
        assert_error(c.post("/v1/feedback", json=correction), 401, "unauthorized")
        assert_error(c.get("/v1/feedback/stats"), 401, "unauthorized")
        keyed = c.post("/v1/feedback", json=correction, headers={"X-API-Key": API_KEY})
        assert keyed.status_code == 201
        assert count(c, Authorization=f"Bearer {API_KEY}") == 1


class _BrokenStore(SQLiteStore):
    """Opens fine, then writes fail as on a full disk (no page to grow into) or a
    read-only file."""

    def __init__(self, target: str, failure: str) -> None:
        super().__init__(target)
        self.failure = failure

    def _prepare(self, conn: sqlite3.Connection) -> None:
        super()._prepare(conn)
        if self.failure == "full":
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            conn.execute(f"PRAGMA max_page_count = {pages}")
        else:
            conn.execute("PRAGMA query_only = ON")


@pytest.mark.parametrize("failure", ["full", "read-only"])
def test_a_failing_store_answers_503_while_analyze_keeps_serving(
    classifier: qinggan.Classifier, tmp_path: Path, failure: str
) -> None:
    db = tmp_path / "fb.db"
    with open_store(str(db)) as store:
        store.record(
            qinggan.feedback.Correction("已有", "Positive", created_at="2026-01-01T00:00:00+00:00")
        )
    client = app_client(classifier, str(db))
    client.app.state.service.feedback.store = _BrokenStore(str(db), failure)  # type: ignore[attr-defined]
    with client as c:
        for i in range(500):
            long_text = f"{i}" + "好" * (LIMIT - 2)
            response = c.post("/v1/feedback", json={"text": long_text, "label": "Negative"})
            if response.status_code != 201:
                break
        assert_error(response, 503, "feedback_unavailable")
        assert response.headers["retry-after"] == "1"
        assert c.post("/analyze", json={"text": POSITIVE}).json()["label"] == "Positive"
        assert c.get("/ready").status_code == 200
        stats = c.get("/v1/feedback/stats")
        assert stats.status_code == 200
        assert 'qinggan_feedback_writes_total{outcome="failed"}' in c.get("/metrics").text
    with open_store(str(db)) as store:
        texts = [c.text for c in store.corrections()]
    assert len(texts) == stats.json()["count"] and f"{i}" + "好" * (LIMIT - 2) not in texts


JSON = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=50),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
BODIES = st.fixed_dictionaries(
    {},
    optional={
        "text": st.text(max_size=LIMIT + 5) | JSON,
        "label": st.sampled_from(["Positive", "Negative", "positive", ""]) | JSON,
        "predicted": st.sampled_from(["Positive", "Negative", "x"]) | JSON,
        "confidence": st.floats(-1, 2) | JSON,
    },
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=BODIES | JSON)
def test_any_body_gets_a_clear_answer_and_201_means_stored(client: TestClient, body: Any) -> None:
    raw = json.dumps(body).encode()
    headers = {"content-type": "application/json"}
    response = client.post("/v1/feedback", content=raw, headers=headers)
    assert response.status_code in (201, 400, 413, 422), response.text
    if response.status_code == 201:
        assert isinstance(body, dict)
        stored = response.json()
        assert (stored["text"], stored["label"]) == (body["text"], body["label"])
        again = client.post("/v1/feedback", content=raw, headers=headers)
        assert again.status_code == 201 and again.json()["id"] == stored["id"]
    else:
        assert set(response.json()["error"]) == {"code", "message"}


# ---------- real server processes ----------


def test_a_201_survives_a_sigkill(tiny_bundle: Bundle, tmp_path: Path) -> None:
    db = tmp_path / "fb.db"
    texts = [f"第{i}条：{POSITIVE if i % 2 else NEGATIVE}" for i in range(12)]
    with ServerProcess(tiny_bundle.path, args=["--feedback-db", str(db)]) as server:
        with server.client() as http:
            ids = [
                http.post("/v1/feedback", json={"text": t, "label": "Negative"}).json()["id"]
                for t in texts
            ]
            server.send_signal(signal.SIGKILL)  # right after the last 201
            assert server.wait() == -signal.SIGKILL
    with open_store(str(db), create=False) as store:
        rows = {c.text: (c.id, c.label) for c in store.corrections()}
    assert rows == {t: (i, "Negative") for t, i in zip(texts, ids, strict=True)}


def test_a_database_that_is_down_does_not_stop_analyses(tiny_bundle: Bundle) -> None:
    pytest.importorskip("psycopg")
    url = "postgresql://qinggan:secret@127.0.0.1:1/none"
    with ServerProcess(tiny_bundle.path, env={"QINGGAN_FEEDBACK_DB": url}) as server:
        with server.client() as http:
            assert http.post("/analyze", json={"text": POSITIVE}).status_code == 200
            response = http.post("/v1/feedback", json={"text": POSITIVE, "label": "Negative"})
            assert_error(response, 503, "feedback_unavailable")
            assert http.get("/info").json()["feedback"] is True
        assert "secret" not in server.output()


def _replicas_write(urls: list[str], writers: int, texts: list[str]) -> None:
    errors: list[str] = []

    def work(n: int) -> None:
        with httpx.Client(base_url=urls[n % len(urls)], timeout=60) as http:
            for i, text in enumerate(texts):
                label = "Positive" if (i + n) % 2 else "Negative"
                response = http.post("/v1/feedback", json={"text": text, "label": label})
                if response.status_code != 201:
                    errors.append(response.text)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[:3]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_two_servers_on_one_store_lose_nothing(
    tiny_bundle: Bundle, tmp_path: Path, request: pytest.FixtureRequest, backend: str
) -> None:
    target = str(tmp_path / "fb.db") if backend == "sqlite" else request.getfixturevalue("pg_url")
    texts = [f"评论{i}" for i in range(30)]
    writers = 4
    args = ["--feedback-db", target]
    with (
        ServerProcess(tiny_bundle.path, args=args) as a,
        ServerProcess(tiny_bundle.path, args=args) as b,
    ):
        _replicas_write([a.base_url, b.base_url], writers, texts)
        stats = httpx.get(a.base_url + "/v1/feedback/stats").json()
    with open_store(target, create=False) as store:
        rows = list(store.corrections())
    assert stats["count"] == len(rows) == len(texts)
    assert sorted(r.text for r in rows) == sorted(texts)
    assert all(r.revisions == writers for r in rows)
