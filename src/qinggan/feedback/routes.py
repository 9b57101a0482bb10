"""The corrections routes of the HTTP service: ``POST /v1/feedback`` and
``GET /v1/feedback/stats``.

They follow ``/analyze``'s rules (JSON errors, the same text checks and limits, the API
key). The store's blocking calls run on a thread of its own, so a slow disk or database
never stalls analyses; a store that cannot write (disk full, read-only, database down)
answers 503 on these routes only. A 201 is sent after the commit, never before.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi import FastAPI, Request
from prometheus_client import Counter
from pydantic import BaseModel, Field
from starlette.responses import Response

from . import open_store
from .store import Correction, FeedbackError, Store, StoreUnavailable, now

if TYPE_CHECKING:
    from ..server import Service

log = logging.getLogger(__name__)
T = TypeVar("T")

ROUTES = ("/v1/feedback", "/v1/feedback/stats")
OFF_MESSAGE = (
    "this server keeps no corrections: start it with --feedback-db FILE_OR_URL "
    "(or QINGGAN_FEEDBACK_DB)"
)
EXAMPLE = '{"text": "...", "label": "Positive"}'


class FeedbackRequest(BaseModel):
    text: str = Field(description="The text that was classified; at most max_text_chars.")
    label: str = Field(description="The correct label: one of the model's labels.")
    predicted: str | None = Field(
        None, description="What the model answered; computed by the server when left out."
    )
    confidence: float | None = Field(None, ge=0, le=1, description="The model's confidence.")


class FeedbackStored(BaseModel):
    id: int = Field(description="The stored row (the same for the same text corrected again).")
    text: str
    label: str
    predicted: str | None
    confidence: float | None


class FeedbackStats(BaseModel):
    count: int = Field(description="Distinct texts corrected.")
    by_label: dict[str, int]
    since: str | None = Field(description="When the oldest stored correction was made (UTC).")


class StoreWorker:
    """A store whose blocking calls run on a thread of their own: off the event loop, and
    out of the default executor (which tokenises big requests), so a slow or hung store
    never delays an analysis. One thread is enough: each store has one connection."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qinggan-feedback")

    @classmethod
    def configured(cls, target: str | None) -> StoreWorker | None:
        """The worker for ``--feedback-db TARGET``; ``None`` when corrections are off."""
        return cls(open_store(target)) if target else None

    async def run(self, call: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, call, *args)

    async def open(self) -> None:
        """Connect at startup; a store that is down now only makes its routes answer 503."""
        try:
            await self.run(self.store.open)
            log.info("corrections are stored in %s", self.store.description)
        except StoreUnavailable as exc:
            log.warning("corrections store unavailable for now (503 until it is back): %s", exc)

    async def close(self) -> None:
        await self.run(self.store.close)
        self._pool.shutdown(wait=False)


def _http() -> Any:
    """The server module (its errors and body parsing), imported when first needed: it
    imports this module while it loads."""
    from .. import server

    return server


def _label(value: Any, where: str, labels: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in labels:
        shown = "missing" if value is None else f"{value!r} is not one of the model's labels"
        message = f"'{where}' {shown}; use one of: {', '.join(labels)}"
        raise _http().ApiError(400, "invalid_label", message)
    return value


def _confidence(value: Any) -> float | None:
    if value is None:
        return None
    number = not isinstance(value, bool) and isinstance(value, int | float)
    if not number or not math.isfinite(value) or not 0 <= value <= 1:
        raise _http().ApiError(422, "invalid_request", "'confidence' must be a number from 0 to 1")
    return float(value)


def _worker(service: Service) -> StoreWorker:
    if service.feedback is None:
        raise _http().ApiError(404, "feedback_off", OFF_MESSAGE)
    return service.feedback


def _unavailable(exc: FeedbackError) -> Exception:
    log.warning("corrections store: %s", exc)
    message = "the corrections store cannot be used right now; nothing was stored, retry later"
    error: Exception = _http().ApiError(503, "feedback_unavailable", message, {"Retry-After": "1"})
    return error


async def _read_correction(request: Request, service: Service) -> Correction:
    """The request's correction, checked, with what the model says when the client did not
    send it, and which model that is."""
    http, settings = _http(), service.settings
    payload = await http.read_object(request, settings.max_body_bytes, EXAMPLE)
    text = http.check_text(payload.get("text"), "text", settings.max_text_chars)
    if "\x00" in text:
        raise http.ApiError(400, "invalid_text", "'text' contains a NUL character")
    labels = tuple(service.model.labels)
    label = _label(payload.get("label"), "label", labels)
    predicted = payload.get("predicted")
    confidence = _confidence(payload.get("confidence"))
    if predicted is None:
        prediction = (await service.classify([text], request, {}))[0]
        predicted, confidence = prediction.label, prediction.confidence
    else:
        predicted = _label(predicted, "predicted", labels)
    model = service.model_info()
    name, sha256 = model.get("name"), model.get("sha256")
    return Correction(text, label, predicted, confidence, name, sha256, now())


async def store_correction(request: Request, service: Service, writes: Counter) -> Response:
    """``POST /v1/feedback``: 201 with the row's id once committed."""
    http = _http()
    try:
        worker = _worker(service)
        c = await _read_correction(request, service)
        try:
            row_id = await worker.run(worker.store.record, c)
        except FeedbackError as exc:
            writes.labels("failed").inc()
            raise _unavailable(exc) from None
        writes.labels("ok").inc()
        body = {"id": row_id, "text": c.text, "label": c.label}
        created: Response = http.json_response(
            {**body, "predicted": c.predicted, "confidence": c.confidence}, 201
        )
        return created
    except http.ApiError as error:
        return error.response()  # type: ignore[no-any-return]


async def correction_stats(request: Request, service: Service) -> Response:
    """``GET /v1/feedback/stats``."""
    http = _http()
    try:
        worker = _worker(service)
        try:
            stats = await worker.run(worker.store.stats)
        except FeedbackError as exc:
            raise _unavailable(exc) from None
        return http.json_response(stats.to_dict())  # type: ignore[no-any-return]
    except http.ApiError as error:
        return error.response()  # type: ignore[no-any-return]


def add_routes(app: FastAPI, service: Service) -> None:
    """Register the corrections routes on ``app``. Without a store they answer 404 saying
    how to turn corrections on, and stay out of the OpenAPI schema (/docs)."""
    documented = service.feedback is not None
    writes = Counter(
        "qinggan_feedback_writes",
        "Corrections stored (ok) or refused because the store failed (failed)",
        ["outcome"],
        registry=service.metrics.registry,
    )

    @app.post(
        "/v1/feedback",
        summary="Store a correction: the right label of a text (the latest one wins)",
        status_code=201,
        response_model=None,
        include_in_schema=documented,
        openapi_extra=_http()._request_body(FeedbackRequest),
        responses={
            201: {"model": FeedbackStored},
            404: {"description": "feedback_off: the server runs without --feedback-db"},
            503: {"description": "feedback_unavailable (store down, full or read-only)"},
        },
    )
    async def feedback(request: Request) -> Response:
        return await store_correction(request, service, writes)

    @app.get(
        "/v1/feedback/stats",
        summary="How many texts were corrected, per label, since when",
        response_model=None,
        include_in_schema=documented,
        responses={200: {"model": FeedbackStats}, 404: {"description": "feedback_off"}},
    )
    async def feedback_stats(request: Request) -> Response:
        return await correction_stats(request, service)
