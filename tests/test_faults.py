"""Faults: broken bundles, failing batches, abandoned requests, signals under load.

* A missing, corrupt or tampered bundle (or a bad setting, or a taken port) makes
  ``qinggan serve`` print one ``error: ...`` line and exit non-zero - and it never
  listens in the meantime (no half-working server).
* Model failures in some batches, among many concurrent requests, fail exactly the
  requests of those batches (500) and nothing else; the service keeps serving.
* Clients that hang up while queued are dropped before inference; the server stays up.
* SIGTERM and SIGINT while requests are queued: every request the server had received
  gets its 200, then the process exits 0.
* Batch file scoring killed at random points and resumed ends with every row exactly
  once, in order.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

import qinggan
from fakes import ModelWrapper
from qinggan.bundle import Bundle
from qinggan.server import create_app
from qinggan.settings import Settings
from serverproc import ServerProcess, clean_env, free_port, serve_command

POSITIVE = "酒店服务很好，非常满意"
NEGATIVE = "质量太差了，很失望"


# -- broken bundles and bad settings -------------------------------------------------------


def _rewrite_manifest(root: Path, change: Callable[[dict[str, Any]], None]) -> None:
    path = root / "qinggan.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _refresh_checksum(root: Path, rel: str) -> None:
    digest = hashlib.sha256((root / rel).read_bytes()).hexdigest()
    _rewrite_manifest(root, lambda d: d["files"].__setitem__(rel, digest))


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _corrupt_model(root: Path) -> None:
    (root / "model.onnx").write_bytes(b"not an onnx graph" * 10)
    _refresh_checksum(root, "model.onnx")


def _corrupt_tokenizer(root: Path) -> None:
    (root / "tokenizer.json").write_text('{"version": "1.0", "model": 42}')
    _refresh_checksum(root, "tokenizer.json")


def _three_labels(root: Path) -> None:
    def change(d: dict[str, Any]) -> None:
        d["labels"] = ["Negative", "Neutral", "Positive"]
        d["display_labels"] = ["负面", "中性", "正面"]

    _rewrite_manifest(root, change)


BROKEN_BUNDLES: dict[str, tuple[Callable[[Path], None], str]] = {
    "missing directory": (lambda root: shutil.rmtree(root), "neither a directory"),
    "no manifest": (lambda root: (root / "qinggan.json").unlink(), "qinggan.json"),
    "manifest not JSON": (
        lambda root: (root / "qinggan.json").write_text("{oops"),
        "not valid JSON",
    ),
    "manifest missing fields": (
        lambda root: (root / "qinggan.json").write_text('{"name": "x"}'),
        "missing field",
    ),
    "tampered model": (lambda root: _flip_byte(root / "model.onnx"), "checksum mismatch"),
    "tampered tokenizer": (lambda root: _flip_byte(root / "tokenizer.json"), "checksum mismatch"),
    "model file missing": (lambda root: (root / "model.onnx").unlink(), "missing file"),
    "corrupt model, checksum updated": (_corrupt_model, "cannot load ONNX model"),
    "corrupt tokenizer, checksum updated": (_corrupt_tokenizer, "tokenizer"),
    "labels do not match the graph": (_three_labels, "outputs"),
}


def run_until_exit(command: list[str], env: dict[str, str], port: int) -> tuple[int, str, bool]:
    """Run ``command``; return (exit code, output, whether ``port`` ever accepted a connection)."""
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    listened = False
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline and not listened:
        with socket.socket() as sock:
            sock.settimeout(0.2)
            listened = sock.connect_ex(("127.0.0.1", port)) == 0
        time.sleep(0.05)
    if proc.poll() is None:
        proc.kill()
    output = proc.communicate()[0].decode("utf-8", errors="replace")
    return proc.returncode, output, listened


def assert_clean_startup_error(code: int, output: str, fragment: str) -> None:
    assert code == 1, output
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, output
    assert fragment.lower() in errors[0].lower(), output


@pytest.mark.parametrize("case", list(BROKEN_BUNDLES))
def test_broken_bundle_is_a_one_line_error_and_never_serves(tiny_bundle, tmp_path, case):
    root = tmp_path / "bundle"
    shutil.copytree(tiny_bundle.path, root)
    breaker, fragment = BROKEN_BUNDLES[case]
    breaker(root)
    port = free_port()
    code, output, listened = run_until_exit(serve_command(root, port), clean_env(), port)
    assert_clean_startup_error(code, output, fragment)
    assert not listened, "the server listened with a broken bundle"


BAD_SETTINGS = [
    ({"QINGGAN_MAX_QUEUE": "lots"}, [], "QINGGAN_MAX_QUEUE"),
    ({"QINGGAN_MAX_TEXT_CHARS": "0"}, [], "max_text_chars"),
    ({"QINGGAN_REQUEST_TIMEOUT_S": "-1"}, [], "request_timeout_s"),
    ({"QINGGAN_API_KEY": "   "}, [], "QINGGAN_API_KEY"),  # fail closed, not "auth off"
    ({"QINGGAN_API_KEY": ""}, [], "QINGGAN_API_KEY"),
    ({}, ["--variant", "int8"], "int8"),
]


@pytest.mark.parametrize(("env", "args", "fragment"), BAD_SETTINGS)
def test_bad_setting_is_a_one_line_error(tiny_bundle, env, args, fragment):
    port = free_port()
    command = serve_command(tiny_bundle.path, port, args)
    code, output, listened = run_until_exit(command, clean_env(env), port)
    assert_clean_startup_error(code, output, fragment)
    assert not listened


def test_port_in_use_fails_cleanly(tiny_bundle):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        proc = subprocess.run(
            serve_command(tiny_bundle.path, port),
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert "Traceback" not in output, output
    assert "address already in use" in output.lower(), output


# -- failing batches among concurrent requests ---------------------------------------------


@pytest.fixture(scope="module")
def classifier(tiny_bundle: Bundle) -> qinggan.Classifier:
    # cut long texts: the fakes below look at each text's token ids (windows have several)
    return qinggan.load(str(tiny_bundle.path), threads=1, long_texts="truncate")


class Flaky(ModelWrapper):
    """The real classifier, failing a seeded-random third of its batches (and recording them)."""

    def __init__(self, model: qinggan.Classifier, seed: int) -> None:
        super().__init__(model)
        self._rng = random.Random(seed)
        self.failed_batches: list[list[tuple[int, ...]]] = []
        self.good_batches = 0
        self.armed = False  # the warm-up at startup must pass

    def infer(self, batch: list[Any]) -> Any:
        time.sleep(0.002)  # long enough for the next requests to queue up behind this batch
        if self.armed and self._rng.random() < 1 / 3:
            self.failed_batches.append([tuple(e.ids) for e in batch])
            raise RuntimeError("injected model failure")
        self.good_batches += 1
        return self._model.infer(batch)


def test_failing_batches_fail_only_their_own_requests(classifier):
    """300 concurrent requests, distinct texts; a third of the model batches raise."""
    model = Flaky(classifier, seed=7)
    words = ["好", "差", "棒", "烂", "满意", "失望", "推荐", "糟糕"]
    rng = random.Random(1)
    texts = list({"".join(rng.choices(words, k=rng.randint(1, 12))) for _ in range(2000)})[:300]
    ids = {tuple(e.ids): t for t, e in zip(texts, classifier.tokenize(texts), strict=True)}
    assert len(ids) == len(texts)  # every text identifiable from its tokens
    app = create_app(Settings(max_batch_size=8, max_wait_ms=1), model=model)

    async def main() -> tuple[list[httpx.Response], httpx.Response, str]:
        async with app.router.lifespan_context(app):
            model.armed = True
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://q") as client:
                responses = await asyncio.gather(
                    *(client.post("/analyze", json={"text": t}) for t in texts)
                )
                model.armed = False
                health = await client.get("/health")
                metrics = (await client.get("/metrics")).text
        return responses, health, metrics

    responses, health, metrics = asyncio.run(main())
    in_failed = {ids[i] for batch in model.failed_batches for i in batch}
    assert model.failed_batches and model.good_batches, "the test did not exercise both paths"
    expected = {t: classifier(t).label for t in texts}
    for text, response in zip(texts, responses, strict=True):
        if text in in_failed:
            assert response.status_code == 500, (text, response.text)
            assert response.json()["error"]["code"] == "internal_error"
            assert "injected" not in response.text
        else:
            assert response.status_code == 200, (text, response.text)
            assert response.json()["label"] == expected[text]
    assert health.status_code == 200
    assert f"qinggan_batch_failures_total {float(len(model.failed_batches))}" in metrics


def test_failing_batch_request_fails_whole_and_alone(classifier):
    """A /v1/analyze request whose texts land in a failing batch fails as a whole."""
    poison = tuple(classifier.tokenize(["毒药毒药"])[0].ids)

    class Poisoned(ModelWrapper):
        def infer(self, batch: Any) -> Any:
            if any(tuple(e.ids) == poison for e in batch):
                raise ValueError("poison")
            return classifier.infer(batch)

    app = create_app(Settings(max_batch_size=2, max_wait_ms=0), model=Poisoned(classifier))

    async def main() -> list[httpx.Response]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://q") as client:
                bad = await client.post("/v1/analyze", json={"texts": [POSITIVE, "毒药毒药"] * 3})
                good = await client.post("/v1/analyze", json={"texts": [POSITIVE, NEGATIVE] * 3})
                return [bad, good, await client.get("/ready")]

    bad, good, ready = asyncio.run(main())
    assert bad.status_code == 500 and bad.json()["error"]["code"] == "internal_error"
    assert good.status_code == 200
    assert [r["label"] for r in good.json()["results"]] == ["Positive", "Negative"] * 3
    assert ready.status_code == 200


def test_overloaded_requests_are_refused_before_tokenising(classifier):
    """With the queue full, a request gets 503 without costing a tokenizer call."""
    gate = threading.Event()
    gate.set()  # let the start-up warm-up through

    class Gated(ModelWrapper):
        tokenized = 0

        def tokenize(self, texts: Any) -> Any:
            self.tokenized += 1
            return classifier.tokenize(texts)

        def infer(self, batch: Any) -> Any:
            gate.wait(30)
            return classifier.infer(batch)

    model = Gated(classifier)
    app = create_app(Settings(max_queue=4, max_batch_size=1, max_wait_ms=0), model=model)
    batcher = None

    async def until(condition: Callable[[], bool]) -> None:
        for _ in range(3000):
            if condition():
                return
            await asyncio.sleep(0.01)
        raise AssertionError("condition not reached")

    async def main() -> tuple[list[httpx.Response], list[httpx.Response], int]:
        nonlocal batcher
        async with app.router.lifespan_context(app):
            batcher = app.state.service.batcher
            gate.clear()
            warmed = model.tokenized  # the start-up warm-up tokenises too
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://q") as client:
                post = lambda: client.post("/analyze", json={"text": POSITIVE})  # noqa: E731
                first = asyncio.ensure_future(post())  # taken by the worker, blocked in infer
                await until(lambda: model.tokenized == warmed + 1 and batcher.queued == 0)
                queued = [asyncio.ensure_future(post()) for _ in range(4)]  # fills the queue
                await until(lambda: batcher.queued == 4)
                before = model.tokenized
                refused = list(await asyncio.gather(*(post() for _ in range(10))))
                spent = model.tokenized - before
                gate.set()
                admitted = list(await asyncio.gather(first, *queued))
        return admitted, refused, spent

    admitted, refused, spent = asyncio.run(main())
    assert [r.status_code for r in refused] == [503] * 10
    assert all(
        r.headers["retry-after"] and r.json()["error"]["code"] == "overloaded" for r in refused
    )
    assert spent == 0, f"{spent} refused requests were tokenised first"
    assert [r.status_code for r in admitted] == [200] * 5


# -- a real server: abandoned requests, signals under load ------------------------------------


def _request_bytes(text: str) -> bytes:
    body = json.dumps({"text": text}, ensure_ascii=False).encode()
    head = (
        "POST /analyze HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _read_response(sock: socket.socket) -> tuple[int, dict[str, Any]]:
    import http.client

    response = http.client.HTTPResponse(sock)
    response.begin()
    return response.status, json.loads(response.read())


def _metric(text: str, name: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )


def test_clients_that_hang_up_are_dropped_before_inference(tiny_bundle):
    env = {"QINGGAN_MAX_BATCH_SIZE": "2"}
    with ServerProcess(tiny_bundle.path, env=env, infer_delay_ms=50) as server:
        socks = []
        for i in range(40):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
            sock.sendall(_request_bytes(POSITIVE if i % 2 else NEGATIVE))
            socks.append(sock)
        time.sleep(0.2)  # all received and queued behind 50 ms batches of 2
        for sock in socks:
            sock.close()
        with server.client() as client:
            deadline = time.monotonic() + 30
            dropped = 0.0
            while time.monotonic() < deadline and dropped == 0:
                time.sleep(0.2)
                dropped = _metric(client.get("/metrics").text, "qinggan_dropped_texts_total")
            assert dropped > 0, "abandoned requests were not dropped"
            assert client.get("/health").status_code == 200
            after = client.post("/analyze", json={"text": POSITIVE})
            assert after.status_code == 200 and after.json()["label"] == "Positive"
        assert server.alive()


def _wait_until_received(server: ServerProcess, count: int) -> None:
    """Until the app has tokenised ``count`` requests (each is tokenised as it arrives)."""
    deadline = time.monotonic() + 30
    with server.client() as client:
        while time.monotonic() < deadline:
            metrics = client.get("/metrics").text
            if _metric(metrics, "qinggan_tokenization_duration_seconds_count") >= count:
                return
            time.sleep(0.01)
    raise AssertionError(f"the server did not receive {count} requests")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_under_load_answers_every_received_request(tiny_bundle, sig):
    env = {"QINGGAN_MAX_BATCH_SIZE": "4"}
    server = ServerProcess(tiny_bundle.path, env=env, infer_delay_ms=40).start()
    try:
        texts = [POSITIVE if i % 2 else NEGATIVE for i in range(32)]
        socks = [socket.create_connection(("127.0.0.1", server.port), timeout=60) for _ in texts]
        idle = socket.create_connection(("127.0.0.1", server.port), timeout=60)  # never sends
        for sock, text in zip(socks, texts, strict=True):
            sock.sendall(_request_bytes(text))
        _wait_until_received(server, len(texts))  # ~0.3 s of model work still queued
        server.send_signal(sig)
        answers = [_read_response(sock) for sock in socks]
        code = server.wait(timeout=60)
        for sock in [*socks, idle]:
            sock.close()
        assert [status for status, _ in answers] == [200] * len(texts), answers
        labels = [body["label"] for _, body in answers]
        assert labels == ["Positive" if t == POSITIVE else "Negative" for t in texts]
        assert code == 0, server.output()
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", server.port)) != 0  # gone, not half-alive
    finally:
        server.close()


# -- batch file scoring: kill at random points, resume ------------------------------------------


def _files_cli_available() -> bool:
    try:
        import qinggan.files  # noqa: F401
    except ImportError:
        return False
    proc = subprocess.run(
        [sys.executable, "-m", "qinggan.cli", "predict", "--help"],
        capture_output=True,
        text=True,
        env=clean_env({"COLUMNS": "200"}),
        check=False,
    )
    return "--resume" in proc.stdout and "--input" in proc.stdout


@pytest.mark.slow
@pytest.mark.skipif(not _files_cli_available(), reason="qinggan predict --input/--resume not built")
@pytest.mark.parametrize("suffix", [".csv", ".parquet"])  # appended partial file / parquet parts
def test_file_scoring_killed_at_random_points_resumes_exactly(tiny_bundle, tmp_path, suffix):
    rng = random.Random(hash(suffix) & 0xFFFF)
    words = ["好", "差", "满意", "失望", "酒店", "服务", "，", "😀"]
    rows = 4000
    source = tmp_path / "in.csv"
    with source.open("w", encoding="utf-8") as fh:
        fh.write("id,text\n")
        for i in range(rows):
            text = "".join(rng.choices(words, k=rng.randint(0, 20))) if i % 97 else ""
            fh.write(f'{i},"{text}"\n')
    model = str(tiny_bundle.path)
    base = [sys.executable, "-m", "qinggan.cli", "predict", "--model", model, "--input",
            str(source), "--chunk-size", "64", "--quiet"]  # fmt: skip
    env = clean_env({"QINGGAN_THREADS": "1", "QINGGAN_CHECKPOINT_SECONDS": "0"})

    reference = tmp_path / f"reference{suffix}"
    subprocess.run([*base, "--output", str(reference)], env=env, check=True, timeout=300)

    out = tmp_path / f"out{suffix}"
    checkpoint = out.with_name(out.name + ".checkpoint.json")
    command = [*base, "--output", str(out)]  # the same command again resumes

    # First a kill at a random moment of startup, then kills at random row counts.
    kill_points = [("time", rng.uniform(0.1, 1.0))]
    kill_points += [("rows", n) for n in sorted(rng.sample(range(1, rows), 3))]
    resumed_from = []
    for kind, point in kill_points:
        if checkpoint.exists():
            resumed_from.append(json.loads(checkpoint.read_text())["rows"])
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
        started = time.monotonic()
        while proc.poll() is None:
            if kind == "time" and time.monotonic() - started >= point:
                break
            if kind == "rows" and _checkpoint_rows(checkpoint) >= point:
                break
            time.sleep(0.005)
        proc.kill()
        proc.wait()
        if out.exists():  # a file at OUT is complete, even if the kill came just after the rename
            assert _rows(out) == _rows(reference)
    subprocess.run(command, env=env, check=True, timeout=300)
    assert resumed_from and max(resumed_from) > 0, "no run resumed from a checkpoint"
    assert _rows(out) == _rows(reference)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(out.name + ".")]
    assert not leftovers, f"partial files left behind: {leftovers}"


def _checkpoint_rows(path: Path) -> int:
    try:
        return int(json.loads(path.read_text())["rows"])
    except (OSError, ValueError, KeyError):
        return 0  # absent, or being replaced this instant


def _rows(path: Path) -> list[tuple[Any, ...]]:
    import pyarrow.csv as pa_csv
    import pyarrow.json as pa_json
    import pyarrow.parquet as pq

    if path.suffix == ".parquet":
        table = pq.read_table(path)
    elif path.suffix == ".csv":
        table = pa_csv.read_csv(path)
    else:
        table = pa_json.read_json(path)
    columns = [c for c in table.column_names if c != "confidence" and not c.startswith("score_")]
    data = table.select(columns).to_pylist()
    confidences = table.column("confidence").to_pylist()
    return [
        (*row.values(), None if c is None else round(c, 3))
        for row, c in zip(data, confidences, strict=True)
    ]
