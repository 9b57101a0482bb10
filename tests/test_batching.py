"""Unit tests of the dynamic batcher with a fake model (no ONNX, no HTTP).

The fake model encodes a text as ``len(text)`` tokens and answers each text with the
label ``L<tokens>``, so tests can see which text went into which batch. A gate lets a
test hold the worker inside a batch while it queues more requests.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest

from qinggan.batching import (
    Batcher,
    ClientGone,
    DeadlineExceeded,
    EngineUnavailable,
    InferenceFailed,
    QueueFull,
)
from qinggan.engine import Prediction
from qinggan.metrics import Metrics
from qinggan.tokenization import Encoded

GENEROUS = 10.0  # seconds; only a hang would reach it


class WorkerCrash(BaseException):
    """Escapes the batcher's per-batch ``except Exception``: kills the worker."""


class FakeModel:
    def __init__(self, *, poison: int | None = None, crash: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.poison = poison
        self.crash = crash
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def tokenize(self, texts: Sequence[str]) -> list[Encoded]:
        return [Encoded(list(range(len(t))), False) for t in texts]

    def infer(self, batch: Sequence[Encoded]) -> list[int]:
        lengths = [len(e) for e in batch]
        self.batches.append(lengths)
        self.entered.set()
        self.gate.wait(GENEROUS)
        if self.crash:
            raise WorkerCrash()
        if self.poison in lengths:
            raise RuntimeError("injected fault /secret/path")
        return lengths

    def to_predictions(self, probs: list[int], batch: Sequence[Encoded]) -> list[Prediction]:
        return [Prediction(label=f"L{n}", label_zh="", confidence=1.0) for n in probs]


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coro, GENEROUS * 3))


async def started(model: FakeModel, **kwargs: object) -> Batcher:
    batcher = Batcher(model, metrics=Metrics(), **kwargs)  # type: ignore[arg-type]
    await batcher.start()
    return batcher


async def hold_worker(model: FakeModel, batcher: Batcher) -> asyncio.Future[list[Prediction]]:
    """Put the worker inside a batch (a 1-token text) and keep it there until gate.set()."""
    model.gate.clear()
    model.entered.clear()
    blocker = batcher.submit(model.tokenize(["x"]), GENEROUS)
    await asyncio.to_thread(model.entered.wait, GENEROUS)
    return blocker


def sample(batcher: Batcher, name: str, **labels: str) -> float:
    value = batcher.metrics.registry.get_sample_value(name, labels or None)
    return value or 0.0


def test_results_come_back_in_input_order() -> None:
    async def scenario() -> list[str]:
        model = FakeModel()
        batcher = await started(model, max_batch_size=2)
        texts = ["aaaaa", "a", "aaa", "aa", "aaaa"]
        predictions = await batcher.submit(model.tokenize(texts), GENEROUS)
        await batcher.close()
        return [p.label for p in predictions]

    assert run(scenario()) == ["L5", "L1", "L3", "L2", "L4"]


def test_timings_report_queue_and_model_time_per_request() -> None:
    async def scenario() -> dict[str, float]:
        model = FakeModel()
        batcher = await started(model, max_batch_size=1)
        timings: dict[str, float] = {}
        await batcher.submit(model.tokenize(["ab", "abc"]), GENEROUS, timings)  # two batches
        await batcher.close()
        return timings

    timings = run(scenario())
    assert set(timings) == {"queue", "inference"}
    assert timings["queue"] >= 0 and timings["inference"] > 0


def test_lone_request_does_not_wait_for_a_batch() -> None:
    async def scenario() -> None:
        model = FakeModel()
        batcher = await started(model, max_wait_ms=60_000)  # a wait would time out below
        result = await asyncio.wait_for(batcher.submit(model.tokenize(["好"]), GENEROUS), 5)
        assert [p.label for p in result] == ["L1"]
        await batcher.close()

    run(scenario())


def test_full_batch_starts_without_waiting_for_max_wait() -> None:
    async def scenario() -> None:
        model = FakeModel()
        batcher = await started(model, max_wait_ms=60_000, max_batch_size=2)
        first = batcher.submit(model.tokenize(["ab"]), GENEROUS)
        second = batcher.submit(model.tokenize(["abc"]), GENEROUS)
        await asyncio.wait_for(asyncio.gather(first, second), 5)
        assert model.batches == [[2, 3]]
        await batcher.close()

    run(scenario())


def test_after_a_busy_window_a_lone_request_waits_for_company() -> None:
    async def scenario() -> None:
        model = FakeModel()
        batcher = await started(model, max_wait_ms=60_000, max_batch_size=2)
        busy = [batcher.submit(model.tokenize([t]), GENEROUS) for t in ("ab", "abc")]
        await asyncio.gather(*busy)  # a window of two requests: load is high
        lone = batcher.submit(model.tokenize(["abcd"]), GENEROUS)
        await asyncio.sleep(0.05)
        assert not lone.done()  # waiting to fill a batch, not run alone
        company = batcher.submit(model.tokenize(["abcde"]), GENEROUS)
        await asyncio.wait_for(asyncio.gather(lone, company), 5)
        assert model.batches == [[2, 3], [4, 5]]
        await batcher.close()

    run(scenario())


def test_oldest_text_runs_first_with_texts_of_similar_length_under_both_budgets() -> None:
    lengths = [9, 1, 7, 3, 8, 2, 6, 4, 5, 10, 1, 9]

    async def scenario() -> FakeModel:
        model = FakeModel()
        batcher = await started(model, max_batch_size=4, max_batch_tokens=24, max_wait_ms=0)
        blocker = await hold_worker(model, batcher)
        futures = [batcher.submit(model.tokenize(["x" * n]), GENEROUS) for n in lengths]
        model.gate.set()
        results = await asyncio.gather(blocker, *futures)
        for n, result in zip(lengths, results[1:], strict=True):
            assert result[0].label == f"L{n}"
        await batcher.close()
        return model

    batches = run(scenario()).batches[1:]  # everything queued while the worker was held
    waiting = list(lengths)  # in arrival order
    assert len(batches) > 1
    for batch in batches:
        assert len(batch) <= 4
        assert len(batch) == 1 or len(batch) * max(batch) <= 24
        assert batch == sorted(batch)
        assert waiting[0] in batch  # the oldest text still waiting is in the next batch
        by_length = sorted(waiting)
        start = by_length.index(batch[0])
        assert by_length[start : start + len(batch)] == batch  # a run of neighbours in length
        for n in batch:
            waiting.remove(n)
    assert waiting == []


def test_cancelled_and_expired_requests_are_dropped_before_inference() -> None:
    async def scenario() -> tuple[FakeModel, Batcher]:
        model = FakeModel()
        batcher = await started(model, max_wait_ms=0)
        blocker = await hold_worker(model, batcher)
        gone = batcher.submit(model.tokenize(["xx"]), GENEROUS)
        expiring = batcher.submit(model.tokenize(["xxx"]), 0.01)
        kept = batcher.submit(model.tokenize(["xxxx"]), GENEROUS)
        gone.set_exception(ClientGone())
        with pytest.raises(DeadlineExceeded):
            await expiring
        model.gate.set()
        await blocker
        assert [p.label for p in await kept] == ["L4"]
        with pytest.raises(ClientGone):
            gone.result()
        await batcher.close()
        return model, batcher

    model, batcher = run(scenario())
    assert model.batches == [[1], [4]]
    assert sample(batcher, "qinggan_dropped_texts_total", reason="disconnected") == 1
    assert sample(batcher, "qinggan_dropped_texts_total", reason="deadline") == 1


def test_a_failing_batch_fails_only_its_requests() -> None:
    async def scenario() -> Batcher:
        model = FakeModel(poison=5)
        batcher = await started(model, max_batch_size=1, max_wait_ms=0)
        blocker = await hold_worker(model, batcher)
        poisoned = batcher.submit(model.tokenize(["xxxxx"]), GENEROUS)
        healthy = batcher.submit(model.tokenize(["xx"]), GENEROUS)
        model.gate.set()
        await blocker
        with pytest.raises(InferenceFailed) as info:
            await poisoned
        assert "secret" not in str(info.value)
        assert [p.label for p in await healthy] == ["L2"]
        assert batcher.healthy
        after = await batcher.submit(model.tokenize(["xxx"]), GENEROUS)
        assert [p.label for p in after] == ["L3"]
        await batcher.close()
        return batcher

    batcher = run(scenario())
    assert sample(batcher, "qinggan_batch_failures_total") == 1


def test_a_dead_worker_fails_pending_requests_and_turns_unhealthy() -> None:
    async def scenario() -> Batcher:
        model = FakeModel(crash=True)
        batcher = await started(model, max_wait_ms=0)
        blocker = await hold_worker(model, batcher)
        queued = batcher.submit(model.tokenize(["xyz"]), GENEROUS)
        model.gate.set()
        for future in (blocker, queued):
            with pytest.raises(EngineUnavailable):
                await future
        assert not batcher.healthy
        with pytest.raises(EngineUnavailable):
            batcher.submit(model.tokenize(["x"]), GENEROUS)
        await batcher.close()
        return batcher

    batcher = run(scenario())
    assert sample(batcher, "qinggan_worker_alive") == 0


def test_full_queue_refuses_at_once_and_recovers() -> None:
    async def scenario() -> Batcher:
        model = FakeModel()
        batcher = await started(model, max_queue=2, max_wait_ms=0)
        blocker = await hold_worker(model, batcher)
        accepted = [batcher.submit(model.tokenize(["ab"]), GENEROUS) for _ in range(2)]
        with pytest.raises(QueueFull):
            batcher.submit(model.tokenize(["ab"]), GENEROUS)
        model.gate.set()
        await asyncio.gather(blocker, *accepted)
        again = await batcher.submit(model.tokenize(["ab", "cd"]), GENEROUS)
        assert len(again) == 2
        await batcher.close()
        return batcher

    batcher = run(scenario())
    assert sample(batcher, "qinggan_rejected_requests_total", reason="queue_full") == 1


def test_close_finishes_queued_requests_then_refuses_new_ones() -> None:
    async def scenario() -> None:
        model = FakeModel()
        batcher = await started(model, max_wait_ms=0)
        blocker = await hold_worker(model, batcher)
        queued = [batcher.submit(model.tokenize(["x" * n]), GENEROUS) for n in (2, 3, 4)]
        closing = asyncio.ensure_future(batcher.close())
        await asyncio.sleep(0)
        with pytest.raises(EngineUnavailable):
            batcher.submit(model.tokenize(["late"]), GENEROUS)
        model.gate.set()
        await closing
        results = await asyncio.gather(blocker, *queued)
        assert [r[0].label for r in results] == ["L1", "L2", "L3", "L4"]
        assert not batcher.healthy

    run(scenario())


def test_batcher_gives_a_long_text_its_own_batch_when_calls_are_cheap() -> None:
    async def scenario() -> FakeModel:
        model = FakeModel()
        batcher = await started(model, max_wait_ms=0, batch_overhead_tokens=4.0)
        blocker = await hold_worker(model, batcher)
        futures = [batcher.submit(model.tokenize(["x" * n]), GENEROUS) for n in (40, 2, 3, 2)]
        model.gate.set()
        await asyncio.gather(blocker, *futures)
        await batcher.close()
        return model

    assert run(scenario()).batches[1:] == [[40], [2, 2, 3]]  # the oldest (40) first
