"""Security properties of ``qinggan serve``, probed from the outside and in-process.

* The API key: every route of the OpenAPI spec (plus /metrics, unknown paths and path
  tricks) needs it; only the probes (/health, /ready), the web page (``/``, ``/static/``:
  it must load to let a user type the key) and the API description (/docs,
  /openapi.json: no data, no model details) are public. Comparison uses
  ``hmac.compare_digest`` (checked by spying on it).
* No stack trace, exception text or file path in any response body, 500s included.
* The body limit is enforced before the body is read: a huge Content-Length with a body
  that never arrives still gets a 413 (if the server waited for the body, the test
  would only see a time-out).
* Security headers on every response, error responses and 500s included.
* Default bind address 127.0.0.1; no ``Server`` banner; the key never reaches a log.
* A client that stalls mid-request (or never sends one) gets 408 and is closed after the
  read timeout; a slow upload that keeps sending and an idle keep-alive connection do not.
"""

from __future__ import annotations

import asyncio
import hmac
import http.client
import json
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

import qinggan
from fakes import ModelWrapper
from qinggan.bundle import Bundle
from qinggan.server import create_app
from qinggan.settings import Settings
from serverproc import ServerProcess, clean_env, free_port, raw_request

API_KEY = "s3cret-key-for-tests-0123456789"
PUBLIC = {"/health", "/ready"}  # the API routes that need no key
PUBLIC_EXTRAS = ["/", "/docs", "/openapi.json"]  # page and API description (see docstring)
WEB_DIR = Path(qinggan.__file__).parent / "web"
BODY_LIMIT = 4096


@pytest.fixture(scope="module")
def keyed(tiny_bundle: Bundle) -> Iterator[ServerProcess]:
    env = {
        "QINGGAN_API_KEY": API_KEY,
        "QINGGAN_MAX_BODY_BYTES": str(BODY_LIMIT),
        "QINGGAN_LOG_LEVEL": "debug",
        "QINGGAN_ACCESS_LOG": "true",
    }
    with ServerProcess(tiny_bundle.path, env=env) as proc:
        yield proc


@pytest.fixture(scope="module")
def spec(keyed: ServerProcess) -> dict[str, Any]:
    return httpx.get(keyed.base_url + "/openapi.json").json()


def operations(spec: dict[str, Any]) -> list[tuple[str, str]]:
    return [(m.upper(), p) for p, item in spec["paths"].items() for m in item]


def sample_request(method: str, path: str) -> dict[str, Any]:
    if path == "/analyze":
        return {"json": {"text": "很好"}}
    if path == "/v1/analyze":
        return {"json": {"texts": ["很好"]}}
    return {}


SECURITY_HEADERS_SEEN: list[tuple[str, int, httpx.Headers]] = []


def record(label: str, response: httpx.Response) -> httpx.Response:
    SECURITY_HEADERS_SEEN.append((label, response.status_code, response.headers))
    assert_no_leak(response.content)
    return response


def assert_no_leak(body: bytes, *extra: str) -> None:
    text = body.decode("utf-8", errors="replace")
    for marker in ("Traceback", 'File "', "site-packages", "/work/", "/tmp/", '.py"', *extra):
        assert marker not in text, f"{marker!r} leaked in {text[:300]!r}"


def assert_security_headers(headers: httpx.Headers | dict[str, str], where: str) -> None:
    csp = headers.get("content-security-policy", "")
    assert "frame-ancestors 'none'" in csp, where
    assert "default-src 'self'" in csp, where
    assert "object-src 'none'" in csp, where
    assert headers.get("x-content-type-options") == "nosniff", where
    assert headers.get("referrer-policy"), where
    assert "server" not in headers and "x-powered-by" not in headers, where


# -- the API key --------------------------------------------------------------------------


def test_every_spec_route_needs_the_key(keyed, spec):
    ops = operations(spec)
    assert ("POST", "/analyze") in ops and ("GET", "/metrics") in ops  # the spec is complete
    with httpx.Client(base_url=keyed.base_url) as client:
        for method, path in ops:
            kwargs = sample_request(method, path)
            anonymous = record(f"{method} {path}", client.request(method, path, **kwargs))
            if path in PUBLIC:
                assert anonymous.status_code == 200, (method, path)
                continue
            assert anonymous.status_code == 401, (method, path, anonymous.status_code)
            assert anonymous.json()["error"]["code"] == "unauthorized"
            assert anonymous.headers["www-authenticate"].lower().startswith("bearer")
            for bad in ("", "Bearer", "Bearer nope", f"Bearer {API_KEY}x", f"Bearer {API_KEY[:-1]}",
                        f"Basic {API_KEY}", API_KEY, f"Bearer {API_KEY.upper()}"):  # fmt: skip
                response = client.request(method, path, headers={"authorization": bad}, **kwargs)
                assert record("bad key", response).status_code == 401, (path, bad)
            for good in ({"authorization": f"Bearer {API_KEY}"}, {"x-api-key": API_KEY},
                         {"authorization": f"bearer {API_KEY}"}):  # fmt: skip
                response = client.request(method, path, headers=good, **kwargs)
                assert record("good key", response).status_code == 200, (path, good)


def test_page_static_and_docs_are_public_but_hold_no_secret(keyed):
    with httpx.Client(base_url=keyed.base_url) as client:
        paths = PUBLIC_EXTRAS + [f"/static/{p.name}" for p in WEB_DIR.iterdir() if p.is_file()]
        for path in paths:
            response = record(path, client.get(path))
            assert response.status_code == 200, path
            assert API_KEY not in response.text
            assert "tiny-test" not in response.text  # no model details without the key
        assert record("listing", client.get("/static/")).status_code == 404  # no listing


BYPASSES = ["/metrics/", "//metrics", "/METRICS", "/metrics%20", "/./metrics", "/info/.",
            "/static/../metrics", "/static/..%2fmetrics", "/static/%2e%2e/info", "/%6detrics",
            "/info?x=/health", "/health/../info", "/ready/../metrics", "/v1/../info",
            "/analyze;/health", "/static//../info", "/nonexistent"]  # fmt: skip


@pytest.mark.parametrize("path", BYPASSES)
def test_path_tricks_do_not_bypass_the_key(keyed, path):
    response = raw_request(keyed.port, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert response is not None
    assert response.status in (401, 404, 405, 307, 400), (path, response)
    assert b"qinggan_requests" not in response.body and b"tiny-test" not in response.body
    assert_no_leak(response.body)


@pytest.mark.parametrize("method", ["HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"])
def test_other_methods_do_not_bypass_the_key(keyed, method):
    for path in ("/info", "/metrics", "/analyze"):
        response = httpx.request(method, keyed.base_url + path)
        assert response.status_code == 401, (method, path, response.status_code)
        assert b"tiny-test" not in response.content


@pytest.mark.parametrize(
    "header",
    [b"X-API-Key: \xff\xfe\xfd", b"Authorization: Bearer \xc3\xa9\xc3\xa9", b"X-API-Key: ",
     b"Authorization: Bearer " + b"k" * 60_000, b"X-API-Key: " + API_KEY.encode() + b"\x00"],
)  # fmt: skip
def test_odd_key_headers_get_401_not_500(keyed, header):
    data = b"GET /info HTTP/1.1\r\nHost: x\r\n" + header + b"\r\n\r\n"
    response = raw_request(keyed.port, data)
    if response is not None:  # uvicorn's parser may refuse the header outright (400)
        assert response.status in (400, 401), response
    assert httpx.get(keyed.base_url + "/health").status_code == 200


def test_unauthenticated_body_is_never_read(keyed):
    """Without a key, a huge upload gets 401 at once: the body is not consumed first."""
    head = (
        b"POST /analyze HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000000000000\r\n\r\n"
    )
    response = raw_request(keyed.port, head + b'{"text": "', timeout=20)
    assert response is not None and response.status == 401, response


def test_key_comparison_uses_compare_digest(classifier, monkeypatch):
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)

    async def scenario(client: httpx.AsyncClient) -> None:
        assert (await client.get("/info", headers={"x-api-key": "wrong"})).status_code == 401
        ok = await client.get("/info", headers={"authorization": f"Bearer {API_KEY}"})
        assert ok.status_code == 200

    in_process(classifier, scenario, api_key=API_KEY)
    compared = {bytes(a) for a, _ in calls} | {bytes(b) for _, b in calls}
    assert b"wrong" in compared and API_KEY.encode() in compared


def test_the_key_never_reaches_logs_or_bodies(keyed):
    with httpx.Client(base_url=keyed.base_url, headers={"x-api-key": API_KEY}) as client:
        for path in ("/info", "/metrics", "/openapi.json", "/"):
            assert API_KEY not in client.get(path).text
        client.post("/analyze", json={"text": "很好"})
        client.post("/analyze", json={"text": API_KEY})  # echoed back: that is the caller's text
    time.sleep(0.2)
    assert API_KEY not in keyed.output()


# -- limits before reading -------------------------------------------------------------------


def test_huge_content_length_gets_413_without_sending_the_body(keyed):
    head = (
        "POST /analyze HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {API_KEY}\r\nContent-Length: 1000000000000\r\n\r\n"
    ).encode()
    response = raw_request(keyed.port, head + b'{"text": "' + b"a" * 100, timeout=20)
    assert response is not None, "no answer: the server waited for a body that never came"
    assert response.status == 413
    assert response.headers["content-type"].startswith("application/json")


def test_chunked_body_gets_413_at_the_limit_while_the_client_is_still_sending(keyed):
    with socket.create_connection(("127.0.0.1", keyed.port), timeout=20) as sock:
        sock.sendall(
            (
                "POST /analyze HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"X-API-Key: {API_KEY}\r\nTransfer-Encoding: chunked\r\n\r\n"
            ).encode()
        )
        chunk = b"a" * 1024
        for _ in range(BODY_LIMIT // len(chunk) + 2):
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        # No terminating chunk: the server must answer without the end of the body.
        reply = sock.recv(65536)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]


# -- headers and leaks on every kind of answer ---------------------------------------------


def test_security_headers_on_every_response_seen(keyed):
    with httpx.Client(base_url=keyed.base_url) as client:
        auth = {"x-api-key": API_KEY}
        extra = [
            client.get("/nope"),
            client.get("/nope", headers=auth),
            client.delete("/health"),
            client.post("/analyze", content=b"x", headers={**auth, "content-type": "text/plain"}),
            client.post(
                "/analyze", content=b"{", headers={**auth, "content-type": "application/json"}
            ),
            client.post("/analyze", json={"text": ""}, headers=auth),
            client.post("/analyze", json={"text": "a" * BODY_LIMIT}, headers=auth),
            client.get("/static/app.js"),
            client.get("/static/style.css"),
            client.get("/static/favicon.svg"),
            client.get("/docs"),
        ]
    for response in extra:
        record(str(response.url), response)
    assert {s for _, s, _ in SECURITY_HEADERS_SEEN} >= {200, 400, 401, 404, 405, 413, 415, 422}
    for label, status, headers in SECURITY_HEADERS_SEEN:
        assert_security_headers(headers, f"{label} -> {status}")
        if label != "/docs" and "/docs" not in label:
            assert "unsafe-inline" not in headers["content-security-policy"], label


class Faulty(ModelWrapper):
    """Wraps the real classifier and raises, with a path in the message, where told to."""

    def __init__(self, model: qinggan.Classifier, where: str) -> None:
        super().__init__(model)
        self.where = where
        self.armed = False

    def _maybe_fail(self, where: str) -> None:
        if self.armed and self.where == where:
            raise RuntimeError(f"boom in /secret/{where}/model.onnx line 42")

    def tokenize(self, texts: Any) -> Any:
        self._maybe_fail("tokenize")
        return self._model.tokenize(texts)

    def infer(self, batch: Any) -> Any:
        self._maybe_fail("infer")
        return self._model.infer(batch)

    def to_predictions(self, probs: Any, batch: Any) -> Any:
        self._maybe_fail("to_predictions")
        return self._model.to_predictions(probs, batch)

    def info(self) -> Any:
        self._maybe_fail("info")
        return self._model.info()


@pytest.fixture(scope="module")
def classifier(tiny_bundle: Bundle) -> qinggan.Classifier:
    return qinggan.load(str(tiny_bundle.path), threads=1)


def in_process(
    model: Any, scenario: Callable[[httpx.AsyncClient], Awaitable[None]], **settings: Any
) -> None:
    app = create_app(Settings(**settings), model=model)

    async def main() -> None:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://qinggan") as client:
                await scenario(client)

    asyncio.run(main())


@pytest.mark.parametrize("where", ["tokenize", "infer", "to_predictions", "info"])
def test_internal_errors_leak_nothing_and_keep_headers(classifier, where):
    model = Faulty(classifier, where)

    async def scenario(client: httpx.AsyncClient) -> None:
        model.armed = True
        responses = [
            await client.post("/analyze", json={"text": "很好"}),
            await client.post("/v1/analyze", json={"texts": ["很好", "太差"]}),
            await client.get("/info"),
        ]
        model.armed = False
        failed = [r for r in responses if r.status_code >= 500]
        assert failed, f"the fault in {where} never surfaced"
        for response in failed:
            assert response.status_code == 500
            assert_no_leak(response.content, "boom", "secret", "RuntimeError", "line 42")
            assert response.json()["error"]["code"] == "internal_error"
            assert_security_headers(response.headers, f"500 after a fault in {where}")
        after = await client.post("/analyze", json={"text": "很好"})
        assert after.status_code == 200 and after.json()["label"] == "Positive"

    in_process(model, scenario, max_wait_ms=0)


# -- binding ------------------------------------------------------------------------------


def test_default_bind_is_loopback(tiny_bundle):
    assert Settings.resolve(environ={}).host == "127.0.0.1"
    port = free_port()
    command = [sys.executable, "-m", "qinggan.cli", "serve", "--model", str(tiny_bundle.path),
               "--port", str(port)]  # fmt: skip
    proc = subprocess.Popen(
        command, env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 60
        listening: list[str] = []
        while time.monotonic() < deadline and not listening and proc.poll() is None:
            time.sleep(0.2)
            conns = psutil.Process(proc.pid).net_connections(kind="inet")
            listening = [c.laddr.ip for c in conns if c.status == psutil.CONN_LISTEN]
        assert listening == ["127.0.0.1"], listening
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_cors_stays_off_with_a_key(keyed):
    preflight = httpx.options(
        keyed.base_url + "/analyze",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers
    assert preflight.status_code in (401, 405)


def test_header_flood_is_refused_without_growing_memory(tiny_bundle):
    """20 MB of headers on one connection: refused at the request-head cap, not buffered."""
    with ServerProcess(tiny_bundle.path) as server:
        process = psutil.Process(server.proc.pid)  # type: ignore[union-attr]
        before = process.memory_info().rss
        reply = b""
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            try:
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
                line = b"X-Pad: " + b"a" * 1000 + b"\r\n"
                for _ in range(20_000):
                    sock.sendall(line)
            except (BrokenPipeError, ConnectionResetError):
                pass  # refused part-way: what we want
            try:
                reply = sock.recv(1024)
            except ConnectionResetError:
                pass
            grown = process.memory_info().rss - before
        assert not reply or reply.startswith(b"HTTP/1.1 431"), reply
        assert server.alive()
        assert grown < 8_000_000, f"RSS grew by {grown / 1e6:.0f} MB"
        with server.client() as client:
            big_but_fine = {"x-pad": "a" * 16_000}  # well under the cap
            assert client.get("/health", headers=big_but_fine).status_code == 200


# -- stalled clients --------------------------------------------------------------------

READ_TIMEOUT_S = 1.0
JSON_HEADERS = {"Content-Type": "application/json"}
STALLED_REQUESTS = {
    "nothing": b"",
    "part of the head": b"POST /analyze HTTP/1.1\r\nHost: x\r\nContent-Ty",
    "part of the body": b"POST /analyze HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
    b'\r\nContent-Length: 40\r\n\r\n{"text": ',
}


@pytest.fixture(scope="module")
def short_read_timeout(tiny_bundle: Bundle) -> Iterator[ServerProcess]:
    env = {"QINGGAN_READ_TIMEOUT_S": str(READ_TIMEOUT_S)}
    with ServerProcess(tiny_bundle.path, env=env) as proc:
        yield proc


def _read_until_closed(sock: socket.socket, limit_s: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and when it closed."""
    started, data = time.monotonic(), b""
    sock.settimeout(limit_s)
    while chunk := sock.recv(4096):
        data += chunk
    return data, time.monotonic() - started


@pytest.mark.parametrize("sent", STALLED_REQUESTS.values(), ids=STALLED_REQUESTS.keys())
def test_a_stalled_request_gets_408_and_is_closed(short_read_timeout, sent):
    with socket.create_connection(("127.0.0.1", short_read_timeout.port), timeout=10) as sock:
        sock.sendall(sent)
        reply, waited = _read_until_closed(sock, limit_s=10)
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), reply
    assert b"content-type: application/json" in head.lower()
    assert json.loads(body)["error"]["code"] == "request_timeout"
    assert READ_TIMEOUT_S * 0.8 <= waited < READ_TIMEOUT_S + 5
    with short_read_timeout.client() as client:  # nobody else was affected
        assert client.post("/analyze", json={"text": "很好"}).status_code == 200


def test_a_slow_upload_that_keeps_sending_is_not_cut_off(short_read_timeout):
    body = json.dumps({"text": "这家酒店服务很好"}).encode()
    head = (
        b"POST /analyze HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    )
    with socket.create_connection(("127.0.0.1", short_read_timeout.port), timeout=10) as sock:
        started = time.monotonic()
        for piece in [head[:20], head[20:], *(body[i : i + 8] for i in range(0, len(body), 8))]:
            sock.sendall(piece)
            time.sleep(READ_TIMEOUT_S * 0.5)
        assert time.monotonic() - started > READ_TIMEOUT_S * 2  # longer than one timeout
        response = http.client.HTTPResponse(sock)
        response.begin()
        assert response.status == 200, response.read()
        assert json.loads(response.read())["label"] in ("Positive", "Negative")


def test_an_idle_keep_alive_connection_is_not_sent_a_408(short_read_timeout):
    """Between requests only uvicorn's keep-alive timeout applies (5 s): no stray 408."""
    conn = http.client.HTTPConnection("127.0.0.1", short_read_timeout.port, timeout=10)
    try:
        for text in ("很好", "太差了"):  # the second on the same socket, after an idle pause
            conn.request("POST", "/analyze", json.dumps({"text": text}), JSON_HEADERS)
            response = conn.getresponse()
            assert response.status == 200, response.read()
            response.read()
            time.sleep(READ_TIMEOUT_S * 2)
    finally:
        conn.close()
