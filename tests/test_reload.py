"""Reloading the model without downtime: ``POST /v1/admin/reload`` and SIGHUP.

The server is started on a symlink to one tiny bundle; the test points the link at a
second bundle (another seed, so another sha256) and asks for a reload, under load from
several client threads, then checks that no request failed and that ``/info`` and
``/metrics`` show the new model.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import qinggan
from fakes import ModelWrapper
from qinggan.interface import Model
from qinggan.server import create_app
from qinggan.settings import Settings
from qinggan.testing import make_tiny_bundle
from serverproc import ServerProcess

API_KEY = "reload-key-0123456789"
KEYED = {"X-API-Key": API_KEY}
POSITIVE = "酒店服务很好，非常满意"
NEGATIVE = "质量太差了，很失望"
# Small requests are tokenised on the event loop; the big batch (over 4096 characters) on
# a helper thread, so a swap can happen between its tokenising and its queueing.
REQUESTS: list[tuple[str, dict[str, Any]]] = [
    ("/analyze", {"json": {"text": POSITIVE}}),
    ("/v1/analyze", {"json": {"texts": [POSITIVE, NEGATIVE]}}),
    ("/v1/analyze", {"json": {"texts": [(POSITIVE + NEGATIVE) * 25] * 10}}),
]


def point(link: Path, target: Path) -> None:
    """Make ``link`` point at ``target`` atomically (as a deployment would)."""
    tmp = link.with_name(link.name + ".new")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    os.replace(tmp, link)


def sha256_of(path: Path) -> str:
    return str(qinggan.load(str(path), threads=1).info()["sha256"])


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two tiny bundles with different weights, and a broken copy of the first."""
    root = tmp_path_factory.mktemp("reload")
    old = make_tiny_bundle(root / "old", seed=0).path
    new = make_tiny_bundle(root / "new", seed=1).path
    broken = root / "broken"
    shutil.copytree(old, broken)
    (broken / "model.onnx").write_bytes(b"not an onnx graph")
    return {"old": old, "new": new, "broken": broken}


@pytest.fixture
def link(bundles: dict[str, Path], tmp_path: Path) -> Path:
    current = tmp_path / "current"
    point(current, bundles["old"])
    return current


def model_sha(client: httpx.Client) -> str:
    return str(client.get("/info", headers=KEYED).json()["model"]["sha256"])


class Load:
    """Client threads that keep sending requests until stopped, counting the statuses."""

    def __init__(self, base_url: str, threads: int = 4) -> None:
        self.base_url = base_url
        self.statuses: Counter[int] = Counter()
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]

    def _run(self, index: int) -> None:
        with httpx.Client(base_url=self.base_url, headers=KEYED, timeout=30) as client:
            i = 0
            while not self._stop.is_set():
                i += 1
                try:
                    path, kwargs = REQUESTS[(index + i) % len(REQUESTS)]
                    response = client.post(path, **kwargs)
                    status = response.status_code
                    if status != 200:
                        self.failures.append(response.text)
                except httpx.HTTPError as error:
                    status = -1
                    self.failures.append(repr(error))
                with self._lock:
                    self.statuses[status] += 1

    def answered(self) -> int:
        with self._lock:
            return sum(self.statuses.values())

    def wait_for(self, more: int, timeout: float = 60) -> None:
        target = self.answered() + more
        deadline = time.monotonic() + timeout
        while self.answered() < target and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.answered() >= target, f"load stalled at {self.answered()} answers"

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)


@pytest.fixture
def keyed_server(link: Path) -> Iterator[ServerProcess]:
    env = {"QINGGAN_API_KEY": API_KEY, "QINGGAN_MAX_BATCH_SIZE": "4", "QINGGAN_THREADS": "1"}
    with ServerProcess(link, env=env, infer_delay_ms=5) as server:
        yield server


def test_reload_under_load_loses_no_request(
    keyed_server: ServerProcess, link: Path, bundles: dict[str, Path]
) -> None:
    old_sha, new_sha = sha256_of(bundles["old"]), sha256_of(bundles["new"])
    assert old_sha != new_sha
    with keyed_server.client(headers=KEYED) as client:
        assert model_sha(client) == old_sha
        with Load(keyed_server.base_url) as load:
            load.wait_for(40)
            point(link, bundles["new"])
            response = client.post("/v1/admin/reload")
            assert response.status_code == 200, response.text
            assert response.json()["model"]["sha256"] == new_sha
            load.wait_for(40)
        assert load.failures == [] and set(load.statuses) == {200}, load.statuses
        info = client.get("/info").json()
        assert info["model"]["sha256"] == new_sha and info["reloads"] == 1
        metrics = client.get("/metrics").text
    assert f'sha256="{new_sha}"}} 1.0' in metrics and old_sha not in metrics
    assert 'qinggan_model_reloads_total{outcome="ok"} 1.0' in metrics
    assert keyed_server.alive()


def test_a_broken_bundle_keeps_the_old_model_serving(
    keyed_server: ServerProcess, link: Path, bundles: dict[str, Path]
) -> None:
    old_sha = sha256_of(bundles["old"])
    with keyed_server.client(headers=KEYED) as client:
        point(link, bundles["broken"])
        response = client.post("/v1/admin/reload")
        assert response.status_code == 500, response.text
        error = response.json()["error"]
        assert error["code"] == "reload_failed" and "checksum" in error["message"]
        assert model_sha(client) == old_sha
        answer = client.post("/analyze", json={"text": POSITIVE})
        assert answer.status_code == 200 and answer.json()["label"] == "Positive"
        assert client.get("/ready").status_code == 200
        assert client.get("/info").json()["reloads"] == 0
        metrics = client.get("/metrics").text
    assert 'qinggan_model_reloads_total{outcome="failed"} 1.0' in metrics


def test_sighup_reloads_and_logs_a_failure(link: Path, bundles: dict[str, Path]) -> None:
    old_sha, new_sha = sha256_of(bundles["old"]), sha256_of(bundles["new"])
    with ServerProcess(link, env={"QINGGAN_LOG_LEVEL": "info"}) as server:
        with server.client() as client:
            point(link, bundles["broken"])
            server.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 60
            while "reload refused" not in server.output() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert "checksum" in server.output().split("reload refused", 1)[1]
            assert model_sha(client) == old_sha
            point(link, bundles["new"])
            server.send_signal(signal.SIGHUP)
            while model_sha(client) != new_sha and time.monotonic() < deadline:
                time.sleep(0.05)
            assert model_sha(client) == new_sha
            assert client.post("/analyze", json={"text": NEGATIVE}).status_code == 200
        assert server.alive()


# -- in-process: who may reload, and one at a time -----------------------------------------


def in_process(
    settings: Settings,
    model: Model,
    scenario: Callable[[httpx.AsyncClient], Any],
    loader: Callable[[], Model] | None = None,
) -> None:
    app = create_app(settings, model, loader=loader)

    async def main() -> None:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://q") as client:
                await scenario(client)

    asyncio.run(main())


@pytest.fixture(scope="module")
def classifier(bundles: dict[str, Path]) -> qinggan.Classifier:
    return qinggan.load(str(bundles["old"]), threads=1)


def test_reload_needs_the_key_and_a_keyed_server(classifier: qinggan.Classifier) -> None:
    async def keyless(client: httpx.AsyncClient) -> None:
        response = await client.post("/v1/admin/reload")
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "admin_disabled"

    async def keyed(client: httpx.AsyncClient) -> None:
        for headers in ({}, {"X-API-Key": "wrong"}):
            response = await client.post("/v1/admin/reload", headers=headers)
            assert response.status_code == 401
            assert response.json()["error"]["code"] == "unauthorized"
        assert (await client.get("/info", headers=KEYED)).json()["reloads"] == 0

    in_process(Settings(), classifier, keyless, loader=lambda: classifier)
    in_process(Settings(api_key=API_KEY), classifier, keyed, loader=lambda: classifier)


def test_one_reload_at_a_time(classifier: qinggan.Classifier) -> None:
    loading = threading.Event()
    release = threading.Event()

    def slow_loader() -> Model:
        loading.set()
        release.wait(30)
        return ModelWrapper(classifier)

    async def scenario(client: httpx.AsyncClient) -> None:
        first = asyncio.ensure_future(client.post("/v1/admin/reload", headers=KEYED))
        await asyncio.to_thread(loading.wait, 30)
        second = await client.post("/v1/admin/reload", headers=KEYED)
        assert second.status_code == 409
        assert second.json()["error"]["code"] == "reload_in_progress"
        answer = await client.post("/analyze", json={"text": POSITIVE}, headers=KEYED)
        assert answer.status_code == 200  # the old model serves while the new one loads
        release.set()
        assert (await first).status_code == 200
        assert (await client.get("/info", headers=KEYED)).json()["reloads"] == 1

    in_process(Settings(api_key=API_KEY), classifier, scenario, loader=slow_loader)


def test_a_request_tokenised_for_the_old_model_is_served_by_the_new_one(
    classifier: qinggan.Classifier,
) -> None:
    """A big request is tokenised on a thread; if the swap happens meanwhile, the old
    batcher is closed by the time it queues, and the request starts over on the new model."""
    tokenizing = threading.Event()
    release = threading.Event()
    big = {"texts": [(POSITIVE + NEGATIVE) * 25] * 10}  # over 4096 characters in all

    class HeldTokenizer(ModelWrapper):
        def tokenize(self, texts: Any) -> Any:
            if sum(map(len, texts)) > 4096:
                tokenizing.set()
                release.wait(30)
            return super().tokenize(texts)

    new = ModelWrapper(classifier)

    async def scenario(client: httpx.AsyncClient) -> None:
        pending = asyncio.ensure_future(client.post("/v1/analyze", json=big, headers=KEYED))
        await asyncio.to_thread(tokenizing.wait, 30)
        assert (await client.post("/v1/admin/reload", headers=KEYED)).status_code == 200
        release.set()
        response = await pending
        assert response.status_code == 200, response.text
        assert len(response.json()["results"]) == 10

    in_process(Settings(api_key=API_KEY), HeldTokenizer(classifier), scenario, loader=lambda: new)
