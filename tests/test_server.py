"""Acceptance tests of the HTTP service.

Most run a real ``qinggan serve`` in a subprocess on a free 127.0.0.1 port with the tiny
bundle; faults that need a doctored model (a poisoned batch, a slow or dying worker)
run the app in-process through ``create_app(settings, model)``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

import qinggan
from fakes import ModelWrapper
from qinggan.bundle import Bundle
from qinggan.server import create_app
from qinggan.settings import Settings
from serverproc import serve_command

POSITIVE = "酒店服务很好，房间干净，非常满意"
NEGATIVE = "质量太差了，很失望，糟糕"
API_KEY = "test-key-Ω-123"
STARTUP_S = 60


# ---------- a real server in a subprocess ----------


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(
    bundle: Bundle, log: Path, *args: str, infer_delay_ms: float | None = None, **env: str
) -> Server:
    """``qinggan serve`` with the tiny bundle (every model call slowed by ``infer_delay_ms``
    if given); returns once /ready answers 200."""
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("QINGGAN_")}
    command = serve_command(bundle.path, port, args, infer_delay_ms)
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command,
            env={**clean, "QINGGAN_THREADS": "1", **env},
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    server = Server(f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"qinggan serve exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(server.url + "/ready", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    server.stop()
    pytest.fail(f"qinggan serve was not ready within {STARTUP_S} s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def server(tiny_bundle: Bundle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # A short artificial model delay makes concurrent requests queue up, so batches form.
    log = tmp_path_factory.mktemp("server") / "server.log"
    srv = start_server(tiny_bundle, log, infer_delay_ms=3, QINGGAN_LONG_TEXTS="truncate")
    yield srv
    assert srv.stop() == 0, log.read_text()


@pytest.fixture(scope="module")
def keyed_server(tiny_bundle: Bundle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("keyed") / "server.log"
    srv = start_server(tiny_bundle, log, QINGGAN_API_KEY=API_KEY, QINGGAN_MAX_TEXT_CHARS="20")
    yield srv
    srv.stop()


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    for leak in ("Traceback", 'File "', "site-packages", "/tmp/", "Error:"):
        assert leak not in response.text


# ---------- routes ----------


def test_analyze_returns_the_original_contract(server: Server) -> None:
    response = httpx.post(server.url + "/analyze", json={"text": POSITIVE})
    for stage in ("tokenization", "queue", "inference", "total"):
        assert float(response.headers[f"x-{stage}-time"]) >= 0  # milliseconds
    good = response.json()
    assert good["label"] == "Positive" and good["label_zh"] == "正面"
    assert good["text"] == POSITIVE and good["truncated"] is False
    assert 0.5 < good["confidence"] <= 1.0
    assert set(good["scores"]) == {"Positive", "Negative"}
    bad = httpx.post(server.url + "/analyze", json={"text": NEGATIVE}).json()
    assert (bad["label"], bad["label_zh"]) == ("Negative", "负面")


def test_batch_results_keep_input_order(server: Server) -> None:
    texts = [NEGATIVE, POSITIVE, "好", "差" * 30, POSITIVE]
    response = httpx.post(server.url + "/v1/analyze", json={"texts": texts})
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["text"] for r in results] == texts
    assert [r["label"] for r in results] == [
        "Negative", "Positive", "Positive", "Negative", "Positive"
    ]  # fmt: skip


def test_large_batch_is_tokenised_off_the_event_loop_and_still_correct(server: Server) -> None:
    texts = [("很好满意" if i % 2 else "太差失望") * 120 for i in range(12)]  # > 4096 chars
    response = httpx.post(server.url + "/v1/analyze", json={"texts": texts}, timeout=30)
    assert response.status_code == 200
    labels = [r["label"] for r in response.json()["results"]]
    assert labels == ["Positive" if i % 2 else "Negative" for i in range(12)]
    assert all(r["truncated"] for r in response.json()["results"])  # 480 chars > 64 tokens


def test_health_ready_info_metrics_docs_and_page(server: Server) -> None:
    get = lambda path: httpx.get(server.url + path)  # noqa: E731
    assert get("/health").json() == {"status": "ok"}
    assert get("/ready").json() == {"status": "ready"}
    assert httpx.head(server.url + "/health").status_code == 200  # for load balancers
    info = get("/info").json()
    assert info["version"] == qinggan.__version__
    assert info["model"]["name"] == "tiny-test" and len(info["model"]["sha256"]) == 64
    assert info["model"]["labels"] == ["Negative", "Positive"]
    assert info["limits"]["max_text_chars"] == 512
    assert "call_overhead_tokens" in info["batching"]
    assert info["limits"]["max_batch_texts"] == 64
    assert {"max_body_bytes", "max_queue", "max_wait_ms", "request_timeout_s"} <= set(
        info["limits"]
    )
    metrics = get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    for name in (
        "qinggan_requests_total", "qinggan_request_duration_seconds_bucket",
        "qinggan_batch_size_bucket", "qinggan_queue_depth",
        "qinggan_inference_duration_seconds_bucket", "qinggan_tokenization_duration_seconds_bucket",
    ):  # fmt: skip
        assert name in metrics.text
    assert 'route="/health",status="200"' in metrics.text
    assert "/analyze" in get("/openapi.json").json()["paths"]
    assert get("/docs").headers["content-type"].startswith("text/html")
    page = get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")


@pytest.mark.parametrize("path", ["/", "/health", "/analyze", "/nowhere"])
def test_security_headers_on_every_answer(server: Server, path: str) -> None:
    headers = httpx.get(server.url + path).headers
    csp = headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    assert "access-control-allow-origin" not in headers  # CORS off by default


def _chunks(size: int) -> Iterator[bytes]:
    yield b'{"text": "'
    for _ in range(size // 65536):
        yield b"a" * 65536
    yield b'"}'


ERROR_CASES: list[tuple[str, str, dict[str, Any], int, str]] = [
    ("POST", "/analyze", {"json": {}}, 400, "invalid_text"),
    ("POST", "/analyze", {"json": {"text": ""}}, 400, "invalid_text"),
    ("POST", "/analyze", {"json": {"text": " \n\t　"}}, 400, "invalid_text"),
    ("POST", "/analyze", {"json": {"text": 42}}, 400, "invalid_text"),
    ("POST", "/analyze", {"json": {"text": None}}, 400, "invalid_text"),
    ("POST", "/v1/analyze", {"json": {"texts": []}}, 400, "invalid_text"),
    ("POST", "/v1/analyze", {"json": {"texts": ["好", 3]}}, 400, "invalid_text"),
    ("POST", "/v1/analyze", {"json": {"texts": ["好", "  "]}}, 400, "invalid_text"),
    ("POST", "/analyze", {"json": {"text": "好" * 513}}, 413, "text_too_long"),
    ("POST", "/v1/analyze", {"json": {"texts": ["好", "差" * 600]}}, 413, "text_too_long"),
    ("POST", "/analyze", {"json": {"text": "a" * 1_100_000}}, 413, "body_too_large"),
    ("POST", "/analyze", {"content": _chunks(2_000_000)}, 413, "body_too_large"),
    ("POST", "/analyze", {"content": b'{"text": "hi"}'}, 415, "unsupported_media_type"),
    ("POST", "/analyze", {"data": {"text": "hi"}}, 415, "unsupported_media_type"),
    ("POST", "/analyze", {"content": b"{not json", "json_type": True}, 422, "invalid_json"),
    ("POST", "/analyze", {"content": b"\xff\xfe", "json_type": True}, 422, "invalid_json"),
    ("POST", "/analyze", {"json": ["hi"]}, 422, "invalid_request"),
    ("POST", "/v1/analyze", {"json": {"texts": "hi"}}, 422, "invalid_request"),
    ("POST", "/v1/analyze", {"json": {"texts": ["好"] * 65}}, 422, "too_many_texts"),
    ("GET", "/nowhere", {}, 404, "not_found"),
    ("GET", "/analyze", {}, 405, "method_not_allowed"),
    ("DELETE", "/health", {}, 405, "method_not_allowed"),
    ("GET", "/static/../../pyproject.toml", {}, 404, "not_found"),
]


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code"),
    ERROR_CASES,
    ids=[f"{c[3]}-{c[4]}-{i}" for i, c in enumerate(ERROR_CASES)],
)
def test_errors_are_json_with_the_right_status(
    server: Server, method: str, path: str, kwargs: dict[str, Any], status: int, code: str
) -> None:
    kwargs = dict(kwargs)
    if kwargs.pop("json_type", False):
        kwargs["headers"] = {"content-type": "application/json"}
    if callable(getattr(kwargs.get("content"), "__next__", None)):
        kwargs["headers"] = {"content-type": "application/json"}  # streamed: no Content-Length
    response = httpx.request(method, server.url + path, timeout=30, **kwargs)
    assert_error(response, status, code)
    assert httpx.get(server.url + "/health").status_code == 200  # the process survived


def test_200_concurrent_requests_are_all_answered_and_batched(server: Server) -> None:
    texts = [POSITIVE if i % 2 else NEGATIVE for i in range(200)]

    async def fire() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=60) as client:
            return await asyncio.gather(*(client.post("/analyze", json={"text": t}) for t in texts))

    responses = asyncio.run(fire())
    assert [r.status_code for r in responses] == [200] * 200
    expected = ["Positive" if i % 2 else "Negative" for i in range(200)]
    assert [r.json()["label"] for r in responses] == expected
    metrics = httpx.get(server.url + "/metrics").text
    count = _sample(metrics, "qinggan_batch_size_count")
    total = _sample(metrics, "qinggan_batch_size_sum")
    assert total >= 200 and count < total  # some batch held more than one text


def _sample(metrics: str, name: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in metrics")


# ---------- the API key ----------

PROTECTED = [
    ("POST", "/analyze", {"json": {"text": "好"}}),
    ("POST", "/v1/analyze", {"json": {"texts": ["好"]}}),
    ("GET", "/info", {}),
    ("GET", "/metrics", {}),
]
PUBLIC = [
    ("GET", p, {}) for p in ("/health", "/ready", "/", "/static/app.js", "/docs", "/openapi.json")
]


@pytest.mark.parametrize(("method", "path", "kwargs"), PROTECTED)
def test_protected_routes_need_the_key(
    keyed_server: Server, server: Server, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    url = keyed_server.url + path
    assert_error(httpx.request(method, url, **kwargs), 401, "unauthorized")
    wrong = {"Authorization": "Bearer nope"}
    assert_error(httpx.request(method, url, headers=wrong, **kwargs), 401, "unauthorized")
    for headers in ({"Authorization": f"Bearer {API_KEY}"}, {"X-API-Key": API_KEY}):
        encoded = {k: v.encode() for k, v in headers.items()}
        response = httpx.request(method, url, headers=encoded, **kwargs)  # type: ignore[arg-type]
        assert response.status_code == 200, response.text
    # the same route without a key on a server started without one
    assert httpx.request(method, server.url + path, **kwargs).status_code == 200


@pytest.mark.parametrize(("method", "path", "kwargs"), PUBLIC)
def test_probes_docs_and_page_stay_public(
    keyed_server: Server, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    assert httpx.request(method, keyed_server.url + path, **kwargs).status_code == 200


def test_settings_come_from_env_vars(keyed_server: Server) -> None:
    headers = {"X-API-Key": API_KEY.encode()}
    info = httpx.get(keyed_server.url + "/info", headers=headers).json()  # type: ignore[arg-type]
    assert info["limits"]["max_text_chars"] == 20 and info["auth"] is True
    long_text = {"text": "好" * 21}
    response = httpx.post(keyed_server.url + "/analyze", json=long_text, headers=headers)  # type: ignore[arg-type]
    assert_error(response, 413, "text_too_long")
    assert API_KEY not in keyed_server.log.read_text()  # logged settings are redacted


# ---------- graceful shutdown ----------


def test_sigterm_under_load_answers_every_accepted_request(
    tiny_bundle: Bundle, tmp_path: Path
) -> None:
    srv = start_server(
        tiny_bundle, tmp_path / "server.log", "--max-batch-size", "4", infer_delay_ms=40,
    )  # fmt: skip
    texts = [POSITIVE if i % 2 else NEGATIVE for i in range(40)]

    async def load() -> list[httpx.Response | BaseException]:
        async with httpx.AsyncClient(base_url=srv.url, timeout=60) as client:
            calls = [client.post("/analyze", json={"text": t}) for t in texts]
            tasks = [asyncio.ensure_future(c) for c in calls]
            # SIGTERM once the first answer is back: the server needs ~0.4 s for all 40,
            # so most are still in flight (a fixed sleep failed on a loaded machine)
            await asyncio.wait(tasks, timeout=30, return_when=asyncio.FIRST_COMPLETED)
            srv.process.send_signal(signal.SIGTERM)
            return await asyncio.gather(*tasks, return_exceptions=True)

    outcomes = asyncio.run(load())
    assert srv.process.wait(timeout=30) == 0, srv.log.read_text()
    answered = [o for o in outcomes if isinstance(o, httpx.Response)]
    refused = [o for o in outcomes if not isinstance(o, httpx.Response)]
    assert all(isinstance(o, httpx.TransportError) for o in refused), refused
    assert answered, "no request was accepted before SIGTERM"
    assert [r.status_code for r in answered] == [200] * len(answered)
    for response in answered:
        text = response.json()["text"]
        assert response.json()["label"] == ("Positive" if text == POSITIVE else "Negative")
    assert "Finished server process" in srv.log.read_text()


# ---------- in-process faults ----------


@pytest.fixture(scope="module")
def classifier(tiny_bundle: Bundle) -> qinggan.Classifier:
    return qinggan.load(str(tiny_bundle.path), threads=1)


class Doctored(ModelWrapper):
    """Wraps the real classifier; once armed, ``hook`` runs before every model call.

    Arming after start-up keeps warm-up and calibration fast and fault-free.
    """

    def __init__(self, model: qinggan.Classifier, hook: Callable[[list[Any]], None]) -> None:
        super().__init__(model)
        self._hook = hook
        self.armed = False

    def infer(self, batch: Any) -> Any:
        if self.armed:
            self._hook(batch)
        return self._model.infer(batch)


class WorkerCrash(BaseException):
    """Not an Exception: escapes the per-batch handler and kills the worker."""


def in_process(
    model: Any, scenario: Callable[[httpx.AsyncClient], Awaitable[None]], **settings: Any
) -> None:
    app = create_app(Settings(**settings), model=model)

    async def main() -> None:
        async with app.router.lifespan_context(app):
            if isinstance(model, Doctored):
                model.armed = True
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://qinggan") as client:
                await scenario(client)

    asyncio.run(main())


def test_a_faulty_batch_fails_with_500_and_the_next_request_succeeds(
    classifier: qinggan.Classifier,
) -> None:
    poison = classifier.tokenize(["糟糕糟糕糟糕糟糕"])[0].ids

    def hook(batch: list[Any]) -> None:
        if any(e.ids == poison for e in batch):
            raise RuntimeError("injected fault in /secret/model.onnx")

    async def scenario(client: httpx.AsyncClient) -> None:
        failed = await client.post("/analyze", json={"text": "糟糕糟糕糟糕糟糕"})
        assert_error(failed, 500, "internal_error")
        assert "secret" not in failed.text and "injected" not in failed.text
        ok = await client.post("/analyze", json={"text": POSITIVE})
        assert ok.status_code == 200 and ok.json()["label"] == "Positive"
        assert (await client.get("/ready")).status_code == 200
        assert "qinggan_batch_failures_total 1.0" in (await client.get("/metrics")).text

    in_process(Doctored(classifier, hook), scenario, max_wait_ms=0)


def test_overload_gets_503_with_retry_after_then_recovers(classifier: qinggan.Classifier) -> None:
    model = Doctored(classifier, lambda batch: time.sleep(0.2))

    async def scenario(client: httpx.AsyncClient) -> None:
        burst = await asyncio.gather(
            *(client.post("/analyze", json={"text": POSITIVE}) for _ in range(10))
        )
        statuses = sorted(r.status_code for r in burst)
        assert set(statuses) == {200, 503}, statuses
        for response in burst:
            if response.status_code == 503:
                assert_error(response, 503, "overloaded")
                assert response.headers["retry-after"] == "1"
            else:
                assert response.json()["label"] == "Positive"
        after = await client.post("/analyze", json={"text": NEGATIVE})
        assert after.status_code == 200 and after.json()["label"] == "Negative"

    in_process(model, scenario, max_queue=2, max_wait_ms=0)


def test_request_past_its_deadline_gets_504(classifier: qinggan.Classifier) -> None:
    model = Doctored(classifier, lambda batch: time.sleep(0.3))

    async def scenario(client: httpx.AsyncClient) -> None:
        response = await client.post("/analyze", json={"text": POSITIVE})
        assert_error(response, 504, "timeout")
        assert (await client.get("/health")).status_code == 200

    in_process(model, scenario, request_timeout_s=0.05)


def test_a_dead_worker_makes_health_and_ready_503(classifier: qinggan.Classifier) -> None:
    def hook(batch: list[Any]) -> None:
        raise WorkerCrash()

    async def scenario(client: httpx.AsyncClient) -> None:
        assert (await client.get("/health")).status_code == 200
        assert_error(await client.post("/analyze", json={"text": POSITIVE}), 503, "unavailable")
        assert_error(await client.get("/health"), 503, "unhealthy")
        assert_error(await client.get("/ready"), 503, "unhealthy")
        assert_error(await client.post("/analyze", json={"text": POSITIVE}), 503, "unavailable")

    in_process(Doctored(classifier, hook), scenario)


def test_cors_is_opt_in(classifier: qinggan.Classifier) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        preflight = await client.options(
            "/analyze",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://app.example"
        other = await client.get("/health", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers

    in_process(classifier, scenario, cors_origins=("https://app.example",), api_key="k")


async def post_then_disconnect(app: Any, path: str, payload: bytes) -> int:
    """Drive the ASGI app directly: send a body, then report the client as gone."""
    messages = [
        {"type": "http.request", "body": payload, "more_body": False},
        {"type": "http.disconnect"},
    ]
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "client": ("127.0.0.1", 9), "server": ("127.0.0.1", 80),
        "headers": [(b"host", b"qinggan"), (b"content-type", b"application/json")],
    }  # fmt: skip
    await app(scope, receive, send)
    return statuses[0]


def test_a_request_whose_client_left_is_dropped_before_inference(
    classifier: qinggan.Classifier,
) -> None:
    import threading

    entered = threading.Event()
    seen: list[list[int]] = []
    gone_ids = classifier.tokenize([NEGATIVE])[0].ids

    def hook(batch: list[Any]) -> None:
        seen.extend(e.ids for e in batch)
        entered.set()
        time.sleep(0.2)

    model = Doctored(classifier, hook)
    app = create_app(Settings(max_wait_ms=0), model=model)

    async def main() -> str:
        async with app.router.lifespan_context(app):
            model.armed = True
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://qinggan") as client:
                entered.clear()
                busy = asyncio.ensure_future(client.post("/analyze", json={"text": POSITIVE}))
                await asyncio.to_thread(entered.wait, 10)  # the worker is in the slow batch
                body = json.dumps({"text": NEGATIVE}).encode()
                assert await post_then_disconnect(app, "/analyze", body) == 499
                assert (await busy).status_code == 200
                after = await client.post("/analyze", json={"text": NEGATIVE})
                assert after.json()["label"] == "Negative"
                return (await client.get("/metrics")).text

    metrics = asyncio.run(main())
    assert seen.count(gone_ids) == 1  # only the later request's copy reached the model
    assert 'qinggan_dropped_texts_total{reason="disconnected"} 1.0' in metrics


def test_openapi_schema_documents_the_key_only_when_one_is_set(
    classifier: qinggan.Classifier,
) -> None:
    keyed = create_app(Settings(api_key="k"), model=classifier).openapi()
    assert set(keyed["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    assert keyed["paths"]["/analyze"]["post"]["security"]
    assert "security" not in keyed["paths"]["/health"]["get"]
    open_schema = create_app(Settings(), model=classifier).openapi()
    assert "securitySchemes" not in open_schema.get("components", {})
    assert set(open_schema["paths"]) == {
        "/analyze", "/v1/analyze", "/health", "/ready", "/info", "/metrics"
    }  # fmt: skip
