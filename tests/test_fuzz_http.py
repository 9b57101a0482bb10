"""Hostile input against a real ``qinggan serve`` subprocess (Hypothesis + raw sockets).

Invariants, whatever a client sends:

* never a 5xx for a client mistake;
* every error the app produces is JSON ``{"error": {"code": str, "message": str}}`` and
  leaks no stack trace or file path;
* the process stays up (``/health`` is checked after every test, i.e. after each batch of
  Hypothesis examples);
* the same text gets the same answer from ``/analyze``, ``/v1/analyze`` and
  ``qinggan predict``.

Requests that are not valid HTTP at all (a bad request line, a broken header) are
rejected by uvicorn's parser before the app runs: those get uvicorn's own plain-text 400
or a closed connection, and only "no 5xx, server still up" is asserted for them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from serverproc import RawResponse, ServerProcess, clean_env, raw_request

WEB_DIR = Path(__file__).resolve().parents[1] / "src" / "qinggan" / "web"
LABELS = {"Positive", "Negative"}
JSON = {"content-type": "application/json"}

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Pieces that have broken text pipelines before: emoji (with skin tones and ZWJ
# sequences), combining marks, zero-width and bidi controls, BOM, C0/C1 controls,
# full-width forms, astral CJK, mixed scripts, markup and format strings.
HOSTILE_PIECES = [
    "😀", "👍🏽", "👨\u200d👩\u200d👧", "🇨🇳", "e\u0301", "\u0301\u0301\u0301", "\u200b", "\u200d",
    "\u200e", "\u202e", "\u2066", "\ufeff", "\x00", "\x07", "\x1b[31m", "\x85", "\r\n", "\t",
    "\u2028", "\u3000", "ＡＢＣ１２３！", "ｈｅｌｌｏ", "مرحبا", "שלום", "Привет", "こんにちは",
    "안녕", "𠜎𠜱", "\U0010ffff", "\ufffd", "\ufdd0", "好", "差", "很好", "太差了", "喜欢", "失望",
    "<script>alert(1)</script>", "' OR 1=1 --", "%s%n%x", "{{7*7}}", "${jndi:x}",
    "../../etc/passwd",
    "\\u0000", "null", "[CLS]", "[SEP]", "[PAD]", "##好",
]  # fmt: skip
hostile_text = st.lists(
    st.one_of(
        st.sampled_from(HOSTILE_PIECES),
        st.text(st.characters(exclude_categories=("Cs",)), max_size=12),
    ),
    max_size=24,
).map("".join)


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tiny_bundle):
    with ServerProcess(tiny_bundle.path) as proc:
        yield proc


@pytest.fixture(scope="module")
def client(server: ServerProcess):
    with server.client() as c:
        yield c


@pytest.fixture(scope="module")
def limits(client: httpx.Client) -> dict[str, int]:
    return client.get("/info").json()["limits"]


@pytest.fixture(autouse=True)
def server_survives(server: ServerProcess, client: httpx.Client):
    """After each test (each batch of examples) the process is up and healthy."""
    yield
    assert server.alive(), f"server died:\n{server.output()[-3000:]}"
    assert client.get("/health").status_code == 200


# -- helpers ------------------------------------------------------------------------------


def assert_json_error(status: int, headers: httpx.Headers | dict[str, str], body: bytes) -> dict:
    """A 4xx/5xx from the app: JSON error shape, no stack trace, no path."""
    assert headers.get("content-type", "").startswith("application/json"), (status, body[:200])
    data = json.loads(body)
    assert set(data) == {"error"}, data
    error = data["error"]
    assert isinstance(error.get("code"), str) and error["code"], data
    assert isinstance(error.get("message"), str) and error["message"], data
    for leak in ("Traceback", 'File "', "/work/", "site-packages", ".py", "Error:"):
        assert leak not in error["message"], data
    return error


def check_response(response: httpx.Response, allowed: set[int]) -> dict:
    assert response.status_code in allowed, (response.status_code, response.text[:300])
    if response.status_code >= 400:
        return assert_json_error(response.status_code, response.headers, response.content)
    return response.json()


def expected_status(text: str, limit: int) -> int:
    """What the contract says a single text gets."""
    if not text.strip():
        return 400
    if len(text) > limit:
        return 413
    return 200


def assert_result(result: dict, text: str) -> None:
    assert result["text"] == text  # echoed exactly, whatever its characters
    assert result["label"] in LABELS
    assert 0.5 <= result["confidence"] <= 1.0
    assert set(result["scores"]) == LABELS
    assert abs(sum(result["scores"].values()) - 1.0) < 1e-3
    assert isinstance(result["truncated"], bool)


def same_answer(a: dict, b: dict) -> bool:
    return (
        a["label"] == b["label"]
        and a["truncated"] == b["truncated"]
        and abs(a["confidence"] - b["confidence"]) <= 2e-4
    )


def post_json(client: httpx.Client, path: str, payload: object, ascii_only: bool) -> httpx.Response:
    body = json.dumps(payload, ensure_ascii=ascii_only).encode("utf-8")
    return client.post(path, content=body, headers=JSON)


# -- arbitrary Unicode ----------------------------------------------------------------------


@FUZZ
@given(text=hostile_text, ascii_only=st.booleans())
def test_any_unicode_text_gets_the_contract_answer(client, limits, text, ascii_only):
    expected = expected_status(text, limits["max_text_chars"])
    response = post_json(client, "/analyze", {"text": text}, ascii_only)
    body = check_response(response, {expected})
    if expected == 200:
        assert_result(body, text)


@FUZZ
@given(
    texts=st.lists(hostile_text.filter(lambda t: t.strip()), min_size=1, max_size=6),
    ascii_only=st.booleans(),
)
def test_batch_agrees_with_single_requests(client, limits, texts, ascii_only):
    assume(all(len(t) <= limits["max_text_chars"] for t in texts))
    batch = check_response(post_json(client, "/v1/analyze", {"texts": texts}, ascii_only), {200})
    assert len(batch["results"]) == len(texts)
    for text, from_batch in zip(texts, batch["results"], strict=True):
        assert_result(from_batch, text)
        single = check_response(post_json(client, "/analyze", {"text": text}, ascii_only), {200})
        assert same_answer(single, from_batch), (text, single, from_batch)
    repeat = check_response(post_json(client, "/v1/analyze", {"texts": texts}, ascii_only), {200})
    assert all(same_answer(a, b) for a, b in zip(batch["results"], repeat["results"], strict=True))


@FUZZ
@given(
    before=st.text(st.characters(codec="ascii", exclude_characters='"\\'), max_size=5),
    surrogates=st.lists(st.integers(0xD800, 0xDFFF), min_size=1, max_size=3),
    endpoint=st.sampled_from(["/analyze", "/v1/analyze"]),
)
def test_lone_surrogate_escapes_are_rejected_cleanly(client, before, surrogates, endpoint):
    escaped = "".join(f"\\u{s:04x}" for s in surrogates)
    # A high surrogate followed by a low one is a valid pair: not what this test is about.
    pairs = zip(surrogates, surrogates[1:], strict=False)
    assume(not any(0xD800 <= a < 0xDC00 <= b <= 0xDFFF for a, b in pairs))
    string = f'"{before}{escaped}"'
    body = f'{{"text": {string}}}' if endpoint == "/analyze" else f'{{"texts": [{string}]}}'
    response = client.post(endpoint, content=body.encode(), headers=JSON)
    check_response(response, {400, 422})


@FUZZ
@given(
    junk=st.binary(min_size=1, max_size=64), endpoint=st.sampled_from(["/analyze", "/v1/analyze"])
)
def test_invalid_utf8_is_rejected_cleanly(client, junk, endpoint):
    try:
        junk.decode("utf-8")
        assume(False)
    except UnicodeDecodeError:
        pass
    body = (
        b'{"text": "' + junk + b'"}' if endpoint == "/analyze" else b'{"texts": ["' + junk + b'"]}'
    )
    check_response(client.post(endpoint, content=body, headers=JSON), {422})


@FUZZ
@given(body=st.binary(max_size=256), endpoint=st.sampled_from(["/analyze", "/v1/analyze"]))
def test_arbitrary_bytes_never_break_the_server(client, body, endpoint):
    check_response(client.post(endpoint, content=body, headers=JSON), {200, 400, 413, 422})


# -- wrong shapes and types ------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=12,
)


@FUZZ
@given(value=json_values.filter(lambda v: not isinstance(v, str)))
def test_non_string_text_is_a_client_error(client, value):
    check_response(post_json(client, "/analyze", {"text": value}, True), {400, 422})
    check_response(post_json(client, "/v1/analyze", {"texts": [value]}, True), {400, 422})
    if not isinstance(value, list):
        check_response(post_json(client, "/v1/analyze", {"texts": value}, True), {400, 422})


@FUZZ
@given(payload=json_values.filter(lambda v: not isinstance(v, dict)))
def test_non_object_body_is_a_client_error(client, payload):
    for endpoint in ("/analyze", "/v1/analyze"):
        check_response(post_json(client, endpoint, payload, True), {400, 422})


@FUZZ
@given(
    extra=st.dictionaries(
        st.text(max_size=6).filter(lambda k: k not in ("text", "texts")), json_values, max_size=3
    )
)
def test_unknown_fields_do_not_matter(client, extra):
    check_response(post_json(client, "/analyze", {**extra, "text": "很好"}, False), {200, 422})


@pytest.mark.parametrize(
    "body",
    [
        b'{"text": 1e999}',
        b'{"text": NaN}',
        b'{"text": 123456789012345678901234567890123456789}',
        b'{"text": "\\u00"}',
        b'{"text": "x"',
        b'{"text": "x"}}',
        b'{"text": "x",}',
        b"{'text': 'x'}",
        b'\xef\xbb\xbf{"text": "x"}',  # UTF-8 BOM before the JSON
        b'{"text": "x"}\x00',
        b"",
        b"null",
        b"[]",
        b'{"texts": "not a list"}',
        b'{"text": {"text": "nested"}}',
    ],
)
def test_malformed_json_documents(client, body):
    for endpoint in ("/analyze", "/v1/analyze"):
        check_response(client.post(endpoint, content=body, headers=JSON), {400, 422})


@pytest.mark.parametrize("depth", [100, 1_000, 100_000])
@pytest.mark.parametrize("shape", ["array", "object", "texts"])
def test_deeply_nested_json(client, depth, shape):
    if shape == "array":
        body = b'{"text": ' + b"[" * depth + b"]" * depth + b"}"
    elif shape == "object":
        body = b'{"text": ' + b'{"a":' * depth + b"1" + b"}" * depth + b"}"
    else:
        body = b'{"texts": [' + b"[" * depth + b"]" * depth + b"]}"
    for endpoint in ("/analyze", "/v1/analyze"):
        check_response(client.post(endpoint, content=body, headers=JSON), {400, 413, 422})


def test_duplicate_keys_answer_for_the_text_echoed(client):
    body = '{"text": "很好很好", "text": "太差了失望"}'.encode()
    result = check_response(client.post("/analyze", content=body, headers=JSON), {200})
    assert result["text"] in ("很好很好", "太差了失望")
    alone = check_response(client.post("/analyze", json={"text": result["text"]}), {200})
    assert same_answer(result, alone)
    body = '{"texts": ["很好"], "texts": ["太差了", "失望"]}'.encode()
    batch = check_response(client.post("/v1/analyze", content=body, headers=JSON), {200})
    assert [r["text"] for r in batch["results"]] in (["很好"], ["太差了", "失望"])


# -- limits -------------------------------------------------------------------------------


@pytest.mark.parametrize("unit", ["好", "a", "😀", "\u200b", "e\u0301", "𠜎", " 好"])
def test_character_limit_is_exact(client, limits, unit):
    """At the limit: 200; one character over: 413 - whatever the characters are."""
    limit = limits["max_text_chars"]
    at_limit = (unit * limit)[:limit]
    if not at_limit.strip():
        pytest.skip("whitespace-only")
    over = at_limit + "好"
    check_response(client.post("/analyze", json={"text": at_limit}), {200})
    check_response(client.post("/analyze", json={"text": over}), {413})
    check_response(client.post("/v1/analyze", json={"texts": ["好", at_limit]}), {200})
    check_response(client.post("/v1/analyze", json={"texts": ["好", over]}), {413})


def test_batch_count_limit_is_exact(client, limits):
    n = limits["max_batch_texts"]
    check_response(client.post("/v1/analyze", json={"texts": ["好"] * n}), {200})
    check_response(client.post("/v1/analyze", json={"texts": ["好"] * (n + 1)}), {422})
    check_response(client.post("/v1/analyze", json={"texts": []}), {400})


def _padded(limit: int, extra: int) -> bytes:
    core = '{"text": "很好"'.encode()
    return core + b" " * (limit + extra - len(core) - 1) + b"}"


def test_body_limit_is_exact(client, limits):
    limit = limits["max_body_bytes"]
    at_limit, over = _padded(limit, 0), _padded(limit, 1)
    assert len(at_limit) == limit and len(over) == limit + 1
    check_response(client.post("/analyze", content=at_limit, headers=JSON), {200})
    check_response(client.post("/analyze", content=over, headers=JSON), {413})


def test_body_limit_holds_without_content_length(client, limits):
    """A chunked body (no Content-Length) is cut off at the limit, not read to the end."""
    limit = limits["max_body_bytes"]

    def chunks():
        yield b'{"text": "'
        for _ in range(limit // 65536 + 2):
            yield "好".encode() * 21845 + b"a"

    check_response(client.post("/analyze", content=chunks(), headers=JSON), {413})


def test_huge_body_is_refused(server, limits):
    size = 16 * limits["max_body_bytes"]
    head = (
        f"POST /analyze HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {size}\r\nConnection: close\r\n\r\n"
    ).encode()
    response = raw_request(server.port, head + b'{"text": "' + b"a" * (size - 12) + b'"}')
    assert response is not None and response.status == 413
    assert_json_error(response.status, response.headers, response.body)


# -- HTTP-level oddities -----------------------------------------------------------------------

CONTENT_TYPES = [
    ("application/json", {200}),
    ("application/json; charset=utf-8", {200}),
    ("APPLICATION/JSON", {200}),
    ("application/vnd.api+json", {200, 415}),
    ("text/plain", {415}),
    ("text/json", {200, 415}),
    ("application/x-www-form-urlencoded", {415}),
    ("multipart/form-data; boundary=xyz", {415}),
    ("application/xml", {415}),
    ("application/jsonx", {415}),
    ("json", {415}),
    ("", {415}),
    (";;;", {415}),
    ("application/json" + "; x=y" * 200, {200, 415}),
]


@pytest.mark.parametrize(("content_type", "allowed"), CONTENT_TYPES)
def test_content_types(client, content_type, allowed):
    check_response(
        client.post(
            "/analyze", content='{"text": "很好"}'.encode(), headers={"content-type": content_type}
        ),
        allowed,
    )


def test_missing_content_type(server):
    body = b'{"text": "x"}'
    raw = f"POST /analyze HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    response = raw_request(server.port, raw + body)
    assert response is not None and response.status in (200, 415)
    if response.status == 415:
        assert_json_error(response.status, response.headers, response.body)


ROUTES = ["/analyze", "/v1/analyze", "/health", "/ready", "/info", "/metrics", "/", "/docs",
          "/openapi.json", "/static/app.js", "/nope"]  # fmt: skip
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "PROPFIND", "HEAD"]


@pytest.mark.parametrize("route", ROUTES)
def test_every_method_on_every_route(client, route):
    for method in METHODS:
        kwargs = {"content": b'{"text": "x"}', "headers": JSON} if method != "GET" else {}
        response = client.request(method, route, **kwargs)
        assert response.status_code < 500, (method, route, response.status_code)
        if response.status_code >= 400 and method != "HEAD":
            assert_json_error(response.status_code, response.headers, response.content)


RAW_REQUESTS = [
    b"FOO /analyze HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /analyze HTTP/9.9\r\nHost: x\r\n\r\n",
    b"GET  HTTP/1.1\r\nHost: x\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,  # a TLS ClientHello
    b"garbage\r\n\r\n",
    b"\r\n\r\n\r\n",
    b"POST /analyze HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    b"POST /analyze HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 9\r\n\r\nhello",
    b"POST /analyze HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
    b"Content-Type: application/json\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    b"POST /analyze HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
    b"Content-Length: 3\r\n\r\n0\r\n\r\n",
    b"GET /health HTTP/1.1\r\nHost: x\r\nX-Bad: a\x00b\r\n\r\n",
    b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n",
    b"GET /health HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(5000)) + b"\r\n",
    b"GET /health HTTP/1.0\r\n\r\n",
    b"GET http://evil.example/health HTTP/1.1\r\nHost: evil.example\r\n\r\n",
    b"POST /analyze HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b'Content-Length: 40\r\n\r\n{"text": "x"}',  # shorter than declared, then nothing
]


@pytest.mark.parametrize("data", RAW_REQUESTS, ids=lambda d: repr(d[:40]))
def test_malformed_http_keeps_the_server_up(server, data):
    response = raw_request(server.port, data, timeout=2)
    if response is not None:
        assert response.status < 500, response
        if response.status >= 400:  # from the app or from the protocol layer: same shape
            assert_json_error(response.status, response.headers, response.body)
            assert "nosniff" in response.headers.get("x-content-type-options", ""), response


def test_short_body_then_silence_times_out_or_waits(server):
    """A client that promises more body than it sends must not stall other clients."""
    import socket

    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as stalled:
        stalled.sendall(
            b"POST /analyze HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 1000\r\n\r\n{"text": '
        )
        with server.client() as other:
            assert other.post("/analyze", json={"text": "很好"}).status_code == 200


PATH_PIECES = ["..", "%2e%2e", "%2E%2E", ".%2e", "%2e.", "%252e%252e", "..%2f", "..%5c", "%2f",
               "%5c", "\\..", "static", "analyze", "index.html", "app.js", "etc", "passwd",
               "pyproject.toml",
               "server.py", "qinggan.json", "~", "", ".", "%00", "%ff", "%c0%af", "%e2%80%a5",
               ";x=1", "?q=../..", "#frag", "%3f", "%23", "a" * 300]  # fmt: skip
FORBIDDEN = [b"from __future__", b"[project]", b"root:x:0", b'"files"', b"import ", b"def "]


def _is_web_file(body: bytes) -> bool:
    return any(body == p.read_bytes() for p in WEB_DIR.iterdir() if p.is_file())


@FUZZ
@given(
    prefix=st.sampled_from(["/", "/static/", "//", "/./", "/static/../", "/v1/"]),
    pieces=st.lists(st.sampled_from(PATH_PIECES), max_size=8),
    separator=st.sampled_from(["/", "%2f", "%2F", "\\", "//"]),
)
def test_path_tricks_never_escape_the_web_dir(server, prefix, pieces, separator):
    path = prefix + separator.join(pieces)
    response = raw_request(
        server.port, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode(), timeout=10
    )
    if response is None:
        return
    assert response.status < 500, (path, response)
    if response.status == 200:
        leaked = [m for m in FORBIDDEN if m in response.body]
        assert not leaked or _is_web_file(response.body), f"{path!r} served {response}"
    elif response.status in (401, 404, 405):
        assert_json_error(response.status, response.headers, response.body)


@pytest.mark.parametrize("length", [1_000, 10_000, 100_000])
def test_very_long_paths(server, length):
    path = "/" + "a" * length
    response: RawResponse | None = raw_request(
        server.port, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    )
    if response is not None:
        assert response.status < 500
        if response.status == 404:
            error = assert_json_error(response.status, response.headers, response.body)
            assert "a" * 100 not in error["message"]


# -- the same answer from every entry point ---------------------------------------------------

CLI_TEXTS = [
    "很好", "太差了", "-n", "--json", "--", "😀😀😀", "e\u0301\u0301 好", "\u200b好\u200b",
    "ＡＢＣ好评", "مرحبا 差", "这家酒店非常满意，下次还来！", "物流太慢，包装很烂，失望。",
    "  前后空格  ", "tab\t分隔",
    "line\nbreak 好", "\u202e差评\u202c", "[CLS] [SEP] 好", "好" * 200, "差" * 512, "👍🏽" * 100,
]  # fmt: skip


def test_cli_http_single_and_batch_agree(server, client, tiny_bundle, limits):
    texts = [t for t in CLI_TEXTS if len(t) <= limits["max_text_chars"]]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "qinggan.cli",
            "predict",
            "--model",
            str(tiny_bundle.path),
            "--json",
            "--",
            *texts,
        ],  # fmt: skip
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    from_cli = [json.loads(line) for line in proc.stdout.splitlines()]
    batch = check_response(client.post("/v1/analyze", json={"texts": texts}), {200})["results"]
    assert len(from_cli) == len(batch) == len(texts)
    for text, cli, in_batch in zip(texts, from_cli, batch, strict=True):
        single = check_response(client.post("/analyze", json={"text": text}), {200})
        assert cli["text"] == in_batch["text"] == single["text"] == text
        assert same_answer(cli, single), (text, cli, single)
        assert same_answer(single, in_batch), (text, single, in_batch)
