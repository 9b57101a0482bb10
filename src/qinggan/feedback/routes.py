"""The corrections routes of the HTTP service: ``POST /v1/feedback`` and
``GET /v1/feedback/stats``.

They follow ``/analyze``'s rules (JSON errors, the same text checks and limits, the API
key). The store's blocking calls run on a worker thread, so a slow disk or database
never stalls analyses; a store that cannot write (disk full, read-only, database down)
answers 503 on these routes only. A 201 is sent after the commit, never before.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from prometheus_client import Counter
from pydantic import BaseModel, Field
from starlette.responses import Response

from .store import Correction, FeedbackError, Store, StoreUnavailable, now

if TYPE_CHECKING:
    from ..server import Service

log = logging.getLogger(__name__)

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


async def open_store(store: Store | None) -> None:
    """Connect at startup; a store that is down now only makes its routes answer 503."""
    if store is None:
        return
    try:
        await asyncio.to_thread(store.open)
        log.info("corrections are stored in %s", store.description)
    except StoreUnavailable as exc:
        log.warning("corrections store unavailable for now (503 until it is back): %s", exc)


async def close_store(store: Store | None) -> None:
    if store is not None:
        await asyncio.to_thread(store.close)


def _label(value: Any, where: str, labels: tuple[str, ...], api_error: Any) -> str:
    allowed = ", ".join(labels)
    if not isinstance(value, str) or value not in labels:
        shown = "missing" if value is None else f"{value!r} is not one of the model's labels"
        raise api_error(400, "invalid_label", f"'{where}' {shown}; use one of: {allowed}")
    return value


def _confidence(value: Any, api_error: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise api_error(422, "invalid_request", "'confidence' must be a number from 0 to 1")
    if not 0 <= value <= 1:
        raise api_error(422, "invalid_request", "'confidence' must be a number from 0 to 1")
    return float(value)


def add_routes(app: FastAPI, service: Service) -> None:
    """Register the corrections routes on ``app`` (they answer 404 without a store)."""
    from .. import server as http

    settings = service.settings
    writes = Counter(
        "qinggan_feedback_writes",
        "Corrections stored (ok) or refused because the store failed (failed)",
        ["outcome"],
        registry=service.metrics.registry,
    )

    def store_or_404() -> Store:
        if service.feedback is None:
            raise http.ApiError(404, "feedback_off", OFF_MESSAGE)
        return service.feedback

    def unavailable(exc: FeedbackError) -> Any:
        log.warning("corrections store: %s", exc)
        message = "the corrections store cannot be used right now; nothing was stored, retry later"
        return http.ApiError(503, "feedback_unavailable", message, {"Retry-After": "1"})

    @app.post(
        "/v1/feedback",
        summary="Store a correction: the right label of a text (the latest one wins)",
        status_code=201,
        response_model=None,
        openapi_extra=http._request_body(FeedbackRequest),
        responses={
            201: {"model": FeedbackStored},
            404: {"description": "feedback_off: the server runs without --feedback-db"},
            503: {"description": "feedback_unavailable (store down, full or read-only)"},
        },
    )
    async def feedback(request: Request) -> Response:
        try:
            store = store_or_404()
            payload = await http.read_object(request, settings.max_body_bytes, EXAMPLE)
            text = http.check_text(payload.get("text"), "text", settings.max_text_chars)
            if "\x00" in text:
                raise http.ApiError(400, "invalid_text", "'text' contains a NUL character")
            labels = tuple(service.model.labels)
            label = _label(payload.get("label"), "label", labels, http.ApiError)
            predicted = payload.get("predicted")
            confidence = _confidence(payload.get("confidence"), http.ApiError)
            if predicted is None:
                prediction = (await service.classify([text], request, {}))[0]
                predicted, confidence = prediction.label, prediction.confidence
            else:
                predicted = _label(predicted, "predicted", labels, http.ApiError)
            model = service.model_info()
            correction = Correction(
                text, label, predicted, confidence, model.get("name"), model.get("sha256"), now()
            )
            try:
                row_id = await asyncio.to_thread(store.record, correction)
            except FeedbackError as exc:
                writes.labels("failed").inc()
                raise unavailable(exc) from None
            writes.labels("ok").inc()
            body = {"id": row_id, "text": text, "label": label}
            return http.json_response(
                {**body, "predicted": predicted, "confidence": confidence}, 201
            )
        except http.ApiError as error:
            return error.response()

    @app.get(
        "/v1/feedback/stats",
        summary="How many texts were corrected, per label, since when",
        response_model=None,
        responses={200: {"model": FeedbackStats}, 404: {"description": "feedback_off"}},
    )
    async def feedback_stats(request: Request) -> Response:
        try:
            store = store_or_404()
            try:
                stats = await asyncio.to_thread(store.stats)
            except FeedbackError as exc:
                raise unavailable(exc) from None
            return http.json_response(stats.to_dict())
        except http.ApiError as error:
            return error.response()
