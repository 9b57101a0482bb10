"""The corrections routes: ``POST /v1/feedback`` and ``GET /v1/feedback/stats``.

They follow ``/analyze``'s rules (JSON errors, the same text checks and limits, the API
key) and answer 404 ``feedback_off`` on a server without a store. The store
(:mod:`qinggan.feedback`) runs on its own thread (:class:`~qinggan.feedback.worker.StoreWorker`);
a store that cannot write (disk full, read-only, database down) answers 503 on these
routes only, and a 201 is sent after the commit, never before.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any, cast

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import Response

from ..errors import (
    FEEDBACK_OFF,
    FEEDBACK_UNAVAILABLE,
    INVALID_LABEL,
    INVALID_REQUEST,
    INVALID_TEXT,
    UNAUTHORIZED,
)
from ..feedback import Correction, FeedbackError, now
from .errors import ApiError, json_response
from .requests import check_text, read_object
from .schemas import ANALYZE_ERRORS, error_responses, request_body

if TYPE_CHECKING:
    from ..feedback.worker import StoreWorker
    from .service import Service

log = logging.getLogger(__name__)

OFF_MESSAGE = (
    "this server keeps no corrections: start it with --feedback-db FILE_OR_URL "
    "(or QINGGAN_FEEDBACK_DB)"
)
UNAVAILABLE_MESSAGE = (
    "the corrections store cannot be used right now; nothing was stored, retry later"
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


def _service(request: Request) -> Service:
    return cast("Service", request.app.state.service)


def _worker(service: Service) -> StoreWorker:
    if service.feedback is None:
        raise ApiError(FEEDBACK_OFF, OFF_MESSAGE)
    return service.feedback


def _label(value: Any, where: str, labels: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in labels:
        shown = "missing" if value is None else f"{value!r} is not one of the model's labels"
        raise ApiError(INVALID_LABEL, f"'{where}' {shown}; use one of: {', '.join(labels)}")
    return value


def _confidence(value: Any) -> float | None:
    if value is None:
        return None
    number = not isinstance(value, bool) and isinstance(value, int | float)
    if not number or not math.isfinite(value) or not 0 <= value <= 1:
        raise ApiError(INVALID_REQUEST, "'confidence' must be a number from 0 to 1")
    return float(value)


async def _read_correction(request: Request, service: Service) -> Correction:
    """The request's correction, checked, with what the model says when the client did not
    send it, and which model that is."""
    settings = service.settings
    payload = await read_object(request, settings, EXAMPLE)
    text = check_text(payload.get("text"), "text", settings.max_text_chars)
    if "\x00" in text:
        raise ApiError(INVALID_TEXT, "'text' contains a NUL character")
    model = service.model
    labels = tuple(model.labels) if model is not None else ()
    label = _label(payload.get("label"), "label", labels)
    predicted = payload.get("predicted")
    confidence = _confidence(payload.get("confidence"))
    if predicted is None:
        prediction = (await service.classify([text], request, {}))[0]
        predicted, confidence = prediction.label, prediction.confidence
    else:
        predicted = _label(predicted, "predicted", labels)
    info = service.model_info() or {}
    return Correction(
        text, label, predicted, confidence, info.get("name"), info.get("sha256"), now()
    )


async def store_correction(request: Request) -> Response:
    """``POST /v1/feedback``: 201 with the row's id once committed."""
    service = _service(request)
    worker = _worker(service)
    c = await _read_correction(request, service)
    try:
        row_id = await worker.run(worker.store.record, c)
    except FeedbackError as exc:
        worker.writes.labels("failed").inc()
        log.warning("corrections store: %s", exc)
        raise ApiError(FEEDBACK_UNAVAILABLE, UNAVAILABLE_MESSAGE) from exc
    worker.writes.labels("ok").inc()
    body = {"id": row_id, "text": c.text, "label": c.label}
    return json_response({**body, "predicted": c.predicted, "confidence": c.confidence}, 201)


async def correction_stats(request: Request) -> Response:
    """``GET /v1/feedback/stats``: distinct texts, per label, since when."""
    worker = _worker(_service(request))
    try:
        stats = await worker.run(worker.store.stats)
    except FeedbackError as exc:
        log.warning("corrections store: %s", exc)
        raise ApiError(FEEDBACK_UNAVAILABLE, UNAVAILABLE_MESSAGE) from exc
    return json_response(stats.to_dict())


STORE_DOCS: dict[str, Any] = {
    "status_code": 201,
    "openapi_extra": request_body(FeedbackRequest),
    "responses": {
        201: {"model": FeedbackStored},
        **error_responses(*ANALYZE_ERRORS, INVALID_LABEL, FEEDBACK_OFF, FEEDBACK_UNAVAILABLE),
    },
}
STATS_DOCS: dict[str, Any] = {
    "responses": {
        200: {"model": FeedbackStats},
        **error_responses(UNAUTHORIZED, FEEDBACK_OFF, FEEDBACK_UNAVAILABLE),
    }
}
