"""What the routes share: the settings, the model and its batcher, the metrics.

:class:`Service` owns the model's lifecycle (load, calibrate, warm up, reload, drain),
admits requests (refusing before tokenising when the queue is full), tokenises them, hands
them to the batcher and turns every batcher error into an :class:`~.errors.ApiError` of its
kind in the error table.

A reload loads the configured model afresh, warms it up on a batcher of its own while the
old model keeps serving, then swaps: new requests go to the new model, the old batcher
drains (every request it accepted finishes on the old model) and stops. A request that
was tokenised for the old model just as the swap happened is tokenised again for the new
one, so none fails. A model that does not load or warm up leaves the old one in service.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from ..batching import Batcher, BatchError, ClientGone, EngineUnavailable
from ..errors import OVERLOADED, RELOAD_FAILED, RELOAD_IN_PROGRESS, UNAVAILABLE, QingganError
from ..feedback.worker import StoreWorker
from ..interface import Model
from ..metrics import Metrics
from ..settings import Settings
from .errors import ApiError

if TYPE_CHECKING:
    from ..engine import Prediction

log = logging.getLogger(__name__)

INLINE_TOKENIZE_CHARS = 4096  # bigger requests are tokenised on a helper thread
WARMUP_TIMEOUT_S = 600.0  # a cold big model may be slow; requests use their own deadline
WARMUP_TEXTS = ("预热 warm-up", "预热" * 32)
SWAP_RETRIES = 3  # a request re-tokenised this often after swaps gives up (503)


@dataclass(frozen=True, slots=True)
class Serving:
    """One model in service: the model, its running batcher and its call overhead."""

    model: Model
    batcher: Batcher
    overhead_tokens: float


class Service:
    """The model in service and everything the routes need around it.

    ``model`` is served as given; without one, :meth:`start` loads one with ``loader``
    (default: the model ``settings`` name), as does every reload.
    """

    def __init__(
        self,
        settings: Settings,
        model: Model | None = None,
        loader: Callable[[], Model] | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.serving: Serving | None = None
        self.ready = False
        self.reloads = 0
        self._given = model
        self._loader = loader or self._load_configured
        self._reloading = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()
        self.feedback = StoreWorker.configured(settings.feedback_db, self.metrics.registry)

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Load (unless given), calibrate and warm up the model; then the service is ready."""
        if self.feedback is not None:
            await self.feedback.open()
        model = self._given
        if model is None:
            model = await asyncio.to_thread(self._loader)
        self._put_in_service(await self._serve(model))
        self.ready = True
        log.info("model %s ready", model.name)

    def _load_configured(self) -> Model:
        """The model the settings name (a bundle path or a built-in), loaded afresh."""
        model: Model = self.settings.load_model()
        return model

    def _put_in_service(self, serving: Serving) -> None:
        self.serving = serving
        info = serving.model.info()
        self.metrics.set_model(str(info.get("name", "")), str(info.get("sha256", "")))
        self.metrics.worker_alive.set(1)

    async def _serve(self, model: Model) -> Serving:
        """Measure the model's call overhead, start its batcher, warm up the whole path."""
        overhead = await asyncio.to_thread(lambda: model.batch_overhead_tokens)
        if math.isfinite(overhead):
            log.info("one model call costs as much as %.0f tokens", overhead)
        else:
            log.info("model calls cost next to nothing: batches are never split for padding")
        s = self.settings
        batcher = Batcher(
            model,
            batch_overhead_tokens=overhead,
            max_batch_size=s.max_batch_size,
            max_batch_tokens=s.max_batch_tokens,
            max_wait_ms=s.max_wait_ms,
            max_queue=s.max_queue,
            metrics=self.metrics,
        )
        await batcher.start()
        try:  # through the tokenizer, the batcher, its worker thread and the model
            await batcher.submit(model.tokenize(WARMUP_TEXTS), WARMUP_TIMEOUT_S)
        except BaseException:
            await batcher.close()
            raise
        return Serving(model, batcher, overhead)

    async def stop(self) -> None:
        """Refuse new requests, finish every accepted one, stop the worker."""
        self.ready = False
        async with self._reloading:  # a reload under way finishes (or fails) first
            if self.serving is not None:
                await self.serving.batcher.close()
        if self.feedback is not None:
            await self.feedback.close()

    async def reload(self) -> dict[str, Any]:
        """Load the configured model afresh, warm it up, swap it in; the old one drains.

        Raises :class:`~.errors.ApiError`: ``reload_in_progress`` while another reload
        runs, ``reload_failed`` (the old model still serving) when the new one fails.
        """
        if self._reloading.locked():
            raise ApiError(RELOAD_IN_PROGRESS, "a reload is already running")
        await self._reloading.acquire()  # free, checked above: taken without yielding
        # Shielded: a client that hangs up mid-reload must not leave a half-started model.
        return await asyncio.shield(self._reload_locked())

    async def _reload_locked(self) -> dict[str, Any]:
        try:
            if not self.ready or self.serving is None:
                raise ApiError(UNAVAILABLE, "the model is not ready yet")
            try:
                new = await self._serve(await asyncio.to_thread(self._loader))
            except Exception as error:
                self.metrics.reloads.labels("failed").inc()
                log.error("reload failed; the previous model keeps serving", exc_info=error)
                raise ApiError(RELOAD_FAILED, _reload_failure(error)) from None
            old = self.serving
            self._put_in_service(new)
            self.reloads += 1
            self.metrics.reloads.labels("ok").inc()
            await old.batcher.close()  # every request it accepted finishes on the old model
            self.metrics.worker_alive.set(1 if new.batcher.healthy else 0)
        finally:
            self._reloading.release()
        info = new.model.info()
        log.info("reloaded: model %s, sha256 %s", info.get("name"), info.get("sha256"))
        return info

    def reload_soon(self) -> None:
        """Start a reload in the background (SIGHUP); its outcome goes to the log."""
        task = asyncio.ensure_future(self._reload_logged())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _reload_logged(self) -> None:
        try:
            await self.reload()
        except ApiError as error:
            log.error("SIGHUP reload refused: %s", error.message)

    # -- state for the routes --------------------------------------------------------------

    @property
    def started(self) -> bool:
        """True once a model's batcher has been started (it may have died since)."""
        return self.serving is not None

    @property
    def healthy(self) -> bool:
        return self.serving is not None and self.serving.batcher.healthy

    @property
    def batcher(self) -> Batcher | None:
        """The served model's batcher (``None`` before start-up)."""
        return self.serving.batcher if self.serving is not None else None

    @property
    def model(self) -> Model | None:
        return self.serving.model if self.serving is not None else self._given

    def model_info(self) -> dict[str, Any] | None:
        model = self.model
        return dict(model.info()) if model is not None else None

    def call_overhead_tokens(self) -> float | None:
        """The served model's fixed cost per call in tokens, ``None`` if negligible/unknown."""
        overhead = self.serving.overhead_tokens if self.serving is not None else math.inf
        return round(overhead, 1) if math.isfinite(overhead) else None

    def limits(self) -> dict[str, Any]:
        s = self.settings
        return {
            "max_text_chars": s.max_text_chars,
            "max_body_bytes": s.max_body_bytes,
            "max_batch_texts": s.max_batch_texts,
            "max_batch_size": s.max_batch_size,
            "max_batch_tokens": s.max_batch_tokens,
            "max_wait_ms": s.max_wait_ms,
            "max_queue": s.max_queue,
            "request_timeout_s": s.request_timeout_s,
        }

    # -- requests -----------------------------------------------------------------------------

    async def classify(
        self, texts: list[str], request: Request, timings: dict[str, float]
    ) -> list[Prediction]:
        """Tokenise, queue and wait; abandons the request if its client disconnects.

        ``timings`` receives the seconds spent tokenising, queued and in the model.
        """
        future = await self._submit(texts, timings)
        watcher = asyncio.ensure_future(request.receive())
        watcher.add_done_callback(lambda task: _abandon_if_gone(task, future))
        try:
            return await future
        except BatchError as error:
            raise ApiError(error.kind, str(error)) from None
        finally:
            watcher.cancel()

    async def _submit(
        self, texts: list[str], timings: dict[str, float]
    ) -> asyncio.Future[list[Prediction]]:
        """Tokenise for the model in service and queue on its batcher. If a reload swapped
        models meanwhile (the old batcher no longer takes requests), start over on the new
        one."""
        for _ in range(SWAP_RETRIES):
            serving = self.serving
            if serving is None or not self.ready:
                raise ApiError(UNAVAILABLE, "the model is not ready yet")
            self._admit(serving.batcher, len(texts))
            encoded = await self._tokenize(serving.model, texts, timings)
            try:
                return serving.batcher.submit(encoded, self.settings.request_timeout_s, timings)
            except EngineUnavailable as error:
                if self.serving is serving:
                    raise ApiError(error.kind, str(error)) from None
            except BatchError as error:
                raise ApiError(error.kind, str(error)) from None
        raise ApiError(UNAVAILABLE, "the model was swapped repeatedly; retry shortly")

    def _admit(self, batcher: Batcher, size: int) -> None:
        """Refuse before tokenising (the batcher's own rule, checked early): under overload
        most requests are refused, and tokenising them first starves the admitted ones."""
        queued = batcher.queued
        if queued and queued + size > batcher.max_queue:
            self.metrics.rejected.labels("queue_full").inc()
            raise ApiError(OVERLOADED, "the server is busy; retry shortly")

    async def _tokenize(
        self, model: Model, texts: list[str], timings: dict[str, float]
    ) -> Sequence[Any]:
        start = time.perf_counter()
        if sum(map(len, texts)) > INLINE_TOKENIZE_CHARS:  # keep the event loop responsive
            encoded = await asyncio.to_thread(model.tokenize, texts)
        else:
            encoded = model.tokenize(texts)
        timings["tokenization"] = time.perf_counter() - start
        self.metrics.tokenization_duration.observe(timings["tokenization"])
        return encoded


def _abandon_if_gone(watcher: asyncio.Future[Any], future: asyncio.Future[Any]) -> None:
    if watcher.cancelled() or watcher.exception() is not None or future.done():
        return
    if watcher.result().get("type") == "http.disconnect":
        future.set_exception(ClientGone("the client went away"))


def _reload_failure(error: Exception) -> str:
    """Why a reload failed, for the admin who asked: a user-facing error says it all;
    anything else is named by type only (the details are in the server log)."""
    if isinstance(error, QingganError):
        return f"the model could not be loaded: {error}"
    return f"the new model failed ({type(error).__name__}); see the server log"
