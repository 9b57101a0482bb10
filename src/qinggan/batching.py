"""Dynamic micro-batching: many concurrent requests, few model calls.

Requests arrive already tokenised and are queued text by text. One scheduler task on
the event loop looks at a window of queued texts, sorts it by token length and cuts it
into batches with :func:`qinggan.planning.plan_batches` (at most ``max_batch_size`` texts
and ``max_batch_tokens`` padded tokens each); the batch holding the oldest text runs next
and the rest go back to the queue (first come, first served). Each batch runs on a
single worker thread (the model's ``infer`` + ``to_predictions``), so the event loop stays
free to accept, tokenise and answer other requests meanwhile.

Latency rules:

* a lone request that finds the model idle runs at once – no batching tax;
* otherwise the scheduler waits until the queue holds a full batch or the oldest text
  has waited ``max_wait_ms``, whichever comes first (requests that queued while the
  model was busy have usually waited long enough already).

Robustness rules:

* the queue is bounded (``max_queue`` texts): a request that does not fit is refused at
  once with :class:`QueueFull` (the server answers 503 + Retry-After);
* every request has a deadline; a request whose deadline passed or whose client went
  away (its future is done) is dropped before inference and counted in metrics;
* an exception in one batch fails only that batch's requests (:class:`InferenceFailed`)
  and the scheduler keeps going;
* if the scheduler itself dies, the batcher turns unhealthy and every pending request
  fails with :class:`EngineUnavailable`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Sequence, Sized
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, ClassVar

from .errors import CLIENT_GONE, INTERNAL_ERROR, OVERLOADED, TIMEOUT, UNAVAILABLE, ErrorKind
from .interface import Model
from .metrics import Metrics
from .options import default_of
from .planning import plan_batches, split_for_padding
from .settings import Settings

if TYPE_CHECKING:
    from .engine import Prediction

log = logging.getLogger(__name__)

WINDOW_BATCHES = 4  # a window holds up to this many full batches, sorted together


class BatchError(Exception):
    """Why a request could not be answered by the batcher; ``kind`` is its row in the
    error table and the message is fit for the client."""

    kind: ClassVar[ErrorKind] = INTERNAL_ERROR


class QueueFull(BatchError):
    """The queue cannot take this request now; retry shortly."""

    kind = OVERLOADED


class EngineUnavailable(BatchError):
    """The batcher is shutting down or its worker died."""

    kind = UNAVAILABLE


class DeadlineExceeded(BatchError):
    """The request waited past its deadline."""

    kind = TIMEOUT


class ClientGone(BatchError):
    """The client disconnected before its answer was ready."""

    kind = CLIENT_GONE


class InferenceFailed(BatchError):
    """The model raised while running the batch that held this request."""

    kind = INTERNAL_ERROR


class _Job:
    """One request: its future, its results so far and how many texts are still missing."""

    __slots__ = ("future", "results", "remaining", "enqueued", "timings")

    def __init__(
        self,
        future: asyncio.Future[list[Prediction]],
        size: int,
        now: float,
        timings: dict[str, float] | None,
    ) -> None:
        self.future = future
        self.results: list[Prediction | None] = [None] * size
        self.remaining = size
        self.enqueued = now
        self.timings = timings


_Item = tuple[_Job, int, Sized]  # (request, index of the text in it, its encoding)


def _drop_reason(future: asyncio.Future[Any]) -> str:
    if future.cancelled():
        return "cancelled"
    exc = future.exception()
    if isinstance(exc, DeadlineExceeded):
        return "deadline"
    if isinstance(exc, ClientGone):
        return "disconnected"
    return "failed"


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Batcher:
    """Queues tokenised requests and runs them through ``model`` in length-sorted batches.

    Use from one event loop: ``await start()``, then ``submit()`` per request and
    ``await close()`` to drain and stop.
    """

    def __init__(
        self,
        model: Model,
        *,
        max_batch_size: int = default_of(Settings, "max_batch_size"),
        max_batch_tokens: int = default_of(Settings, "max_batch_tokens"),
        max_wait_ms: float = default_of(Settings, "max_wait_ms"),
        max_queue: int = default_of(Settings, "max_queue"),
        batch_overhead_tokens: float = math.inf,
        metrics: Metrics | None = None,
    ) -> None:
        self.model = model
        self.max_batch_size = max_batch_size
        self.max_batch_tokens = max_batch_tokens
        self.max_wait = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self.batch_overhead_tokens = batch_overhead_tokens
        self.window_size = max_batch_size * WINDOW_BATCHES
        self.metrics = metrics or Metrics()
        self._queue: deque[_Item] = deque()
        self._active: list[_Item] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._want = 1
        self._closing = False
        self._last_window_jobs = 0  # requests in the previous window: 1 means low load
        self._last_done = float("-inf")  # loop time the previous window finished

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Start the scheduler task and the inference thread on the running loop."""
        if self._task is not None:
            raise RuntimeError("batcher already started")
        self._loop = asyncio.get_running_loop()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qinggan-infer")
        self._task = self._loop.create_task(self._run(), name="qinggan-batcher")
        self._task.add_done_callback(self._on_worker_exit)
        self.metrics.worker_alive.set(1)

    async def close(self) -> None:
        """Stop taking requests, finish every queued one, then stop the worker."""
        self._closing = True
        if self._waiter is not None:
            _wake(self._waiter)
        if self._task is not None:
            await asyncio.wait({self._task})
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    @property
    def healthy(self) -> bool:
        """True while the scheduler runs (started, not dead, not stopped)."""
        return self._task is not None and not self._task.done()

    @property
    def accepting(self) -> bool:
        return self.healthy and not self._closing

    @property
    def queued(self) -> int:
        """Texts waiting for a batch."""
        return len(self._queue)

    # -- requests ---------------------------------------------------------------------

    def submit(
        self, encoded: Sequence[Sized], timeout: float, timings: dict[str, float] | None = None
    ) -> asyncio.Future[list[Prediction]]:
        """Queue one request's texts; the future resolves to their predictions, in order.

        Raises :class:`QueueFull` when the queue is not empty and cannot hold all the
        texts, :class:`EngineUnavailable` when closing or dead. The future fails with
        :class:`DeadlineExceeded` after ``timeout`` seconds. Set :class:`ClientGone` on
        it to abandon the request; it is then dropped before inference. ``timings``, if
        given, receives ``queue`` (seconds until its first batch) and ``inference``
        (seconds of model time of the batches that held it).
        """
        if not self.accepting:
            raise EngineUnavailable("the model worker is not running")
        queue = self._queue
        size = len(encoded)
        if queue and len(queue) + size > self.max_queue:
            self.metrics.rejected.labels("queue_full").inc()
            raise QueueFull(f"the server is busy ({len(queue)} texts queued); retry shortly")
        loop = self._loop
        assert loop is not None
        future: asyncio.Future[list[Prediction]] = loop.create_future()
        if size == 0:
            future.set_result([])
            return future
        now = loop.time()
        job = _Job(future, size, now, timings)
        timer = loop.call_at(now + timeout, self._expire, future, timeout)
        future.add_done_callback(lambda _f: timer.cancel())
        queue.extend((job, i, enc) for i, enc in enumerate(encoded))
        self.metrics.queue_depth.set(len(queue))
        waiter = self._waiter
        if waiter is not None and len(queue) >= self._want:
            _wake(waiter)
        return future

    @staticmethod
    def _expire(future: asyncio.Future[list[Prediction]], timeout: float) -> None:
        if not future.done():
            future.set_exception(DeadlineExceeded(f"the request waited more than {timeout:g} s"))

    # -- the scheduler ------------------------------------------------------------------

    async def _sleep(self, until: float | None, want: int) -> None:
        """Sleep until the queue holds ``want`` texts, ``until`` (loop time) or close()."""
        loop = self._loop
        assert loop is not None
        self._want = want
        waiter = self._waiter = loop.create_future()
        handle = loop.call_at(until, _wake, waiter) if until is not None else None
        try:
            await waiter
        finally:
            self._waiter = None
            if handle is not None:
                handle.cancel()

    async def _run(self) -> None:
        loop = self._loop
        assert loop is not None
        queue = self._queue
        while True:
            if not queue:
                if self._closing:
                    return
                await self._sleep(None, want=1)
                continue
            if self._should_wait(queue, loop.time()):
                until = queue[0][0].enqueued + self.max_wait
                await self._sleep(until, want=self.max_batch_size)
            take = min(len(queue), self.window_size)
            window = [queue.popleft() for _ in range(take)]
            self._last_window_jobs = 1 + sum(
                window[i][0] is not window[i - 1][0] for i in range(1, take)
            )
            batch, rest = self._next_batch(window)
            queue.extendleft(reversed(rest))  # back at the front, in arrival order
            self.metrics.queue_depth.set(len(queue))
            if batch:
                await self._run_batch(batch)
            self._last_done = loop.time()

    def _should_wait(self, queue: deque[_Item], now: float) -> bool:
        """Wait to fill a batch? Never for a lone request at low load; else up to max_wait.

        "Low load" means the previous window held a single request or the model has been
        idle for at least max_wait. Right after a busy window, a lone request is usually the
        first of several that clients are about to send, so it waits (at most max_wait)
        instead of occupying the model with a batch of one.
        """
        if self._closing or self.max_wait <= 0 or len(queue) >= self.max_batch_size:
            return False
        if now >= queue[0][0].enqueued + self.max_wait:
            return False
        lone = queue[0][0] is queue[-1][0]
        quiet = self._last_window_jobs <= 1 or now - self._last_done >= self.max_wait
        return not (lone and quiet)

    def _next_batch(self, window: list[_Item]) -> tuple[list[_Item], list[_Item]]:
        """The batch to run now, and the rest of ``window`` (to go back in the queue).

        The window is sorted by length and cut by ``plan_batches`` (size and token budgets);
        the cut holding the *oldest* text is split further where padding would cost more
        than an extra model call (:func:`split_for_padding`), and the piece holding that
        text runs. Serving the oldest text first keeps waits first-come, first-served: a
        long text is not overtaken by a stream of shorter ones, and nobody waits for a
        whole window of other people's batches (the tail stays close to the median).
        """
        live = self._live(window)
        if not live:
            return [], []
        plan = plan_batches(
            [len(item[2]) for item in live], self.max_batch_size, self.max_batch_tokens
        )
        cut = next(indices for indices in plan if 0 in indices)
        oldest = cut.index(0)
        lengths = [len(live[i][2]) for i in cut]
        begin, end = next(
            (b, e)
            for b, e in split_for_padding(lengths, self.batch_overhead_tokens)
            if b <= oldest < e
        )
        chosen = cut[begin:end]
        taken = set(chosen)
        return [live[i] for i in chosen], [item for i, item in enumerate(live) if i not in taken]

    def _live(self, items: list[_Item]) -> list[_Item]:
        """``items`` minus those whose request already ended (counted as dropped)."""
        live = []
        for item in items:
            future = item[0].future
            if future.done():
                self.metrics.dropped.labels(_drop_reason(future)).inc()
            else:
                live.append(item)
        return live

    async def _run_batch(self, batch: list[_Item]) -> None:
        loop = self._loop
        assert loop is not None and self._executor is not None
        metrics = self.metrics
        now = loop.time()
        for item in batch:
            metrics.queue_duration.observe(now - item[0].enqueued)
        encoded = [item[2] for item in batch]
        self._active = batch
        try:
            predictions, seconds = await loop.run_in_executor(self._executor, self._infer, encoded)
        except Exception:
            self._active = []
            log.exception("model batch of %d texts failed", len(batch))
            metrics.batch_failures.inc()
            failure = "the model failed on this request"
            for item in batch:
                if not item[0].future.done():
                    item[0].future.set_exception(InferenceFailed(failure))
            return
        # On anything worse than Exception, _active stays set so _on_worker_exit fails it.
        self._active = []
        metrics.inference_duration.observe(seconds)
        self._record_timings(batch, now, seconds)
        metrics.batch_size.observe(len(batch))
        metrics.batch_tokens.observe(len(batch) * max(len(e) for e in encoded))
        for (job, index, _), prediction in zip(batch, predictions, strict=True):
            if job.future.done():
                continue
            job.results[index] = prediction
            job.remaining -= 1
            if job.remaining == 0:
                job.future.set_result(job.results)  # type: ignore[arg-type]

    @staticmethod
    def _record_timings(batch: list[_Item], started: float, seconds: float) -> None:
        """Fill the ``timings`` dicts of the batch's requests: queue and model seconds."""
        seen: set[int] = set()
        for job, _, _ in batch:
            timings = job.timings
            if timings is not None and id(job) not in seen:
                seen.add(id(job))
                timings.setdefault("queue", started - job.enqueued)
                timings["inference"] = timings.get("inference", 0.0) + seconds

    def _infer(self, encoded: list[Sized]) -> tuple[list[Prediction], float]:
        """Runs on the worker thread: one model call for one batch."""
        start = time.perf_counter()
        predictions = self.model.to_predictions(self.model.infer(encoded), encoded)
        if len(predictions) != len(encoded):
            raise RuntimeError(
                f"model returned {len(predictions)} predictions for {len(encoded)} texts"
            )
        return predictions, time.perf_counter() - start

    def _on_worker_exit(self, task: asyncio.Task[None]) -> None:
        """Fail everything still pending; an unexpected exit marks the batcher unhealthy."""
        self.metrics.worker_alive.set(0)
        error = None if task.cancelled() else task.exception()
        if error is not None:
            log.critical("batching worker died; the service is unhealthy", exc_info=error)
        elif not self._closing:
            log.critical("batching worker stopped unexpectedly; the service is unhealthy")
        pending = [*self._active, *self._queue]
        self._queue.clear()
        self._active = []
        self.metrics.queue_depth.set(0)
        for job, _, _ in pending:
            if not job.future.done():
                job.future.set_exception(EngineUnavailable("the model worker is not running"))
