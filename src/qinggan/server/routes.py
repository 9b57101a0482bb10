"""The routes: module-level functions that read the :class:`~.service.Service` from
``request.app.state`` and return a finished response.

Each takes the raw :class:`~starlette.requests.Request` and returns pre-serialised bytes;
request bodies are read and checked by :mod:`.requests`, and errors are raised as
:class:`~.errors.ApiError` (answered by the app's handler). Adding a route is one function
here plus one line in :data:`ROUTES`; :func:`~.app.create_app` registers the table.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response

from .. import __version__
from ..errors import (
    ADMIN_DISABLED,
    NOT_READY,
    RELOAD_FAILED,
    RELOAD_IN_PROGRESS,
    UNAUTHORIZED,
    UNAVAILABLE,
    UNHEALTHY,
)
from .errors import ApiError, json_response
from .feedback import STATS_DOCS, STORE_DOCS, correction_stats, store_correction
from .requests import check_text, check_texts, read_object
from .schemas import (
    ANALYZE_ERRORS,
    AnalyzeRequest,
    AnalyzeResult,
    BatchRequest,
    BatchResult,
    error_responses,
    request_body,
)
from .service import Service

if TYPE_CHECKING:
    from ..engine import Prediction

WEB_DIR = Path(__file__).parent.parent / "web"
PLACEHOLDER_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>qinggan</title></head><body><h1>情感 qinggan</h1>
<p>The web page is not installed. The API is at <a href="docs">/docs</a>.</p></body></html>"""

Endpoint = Callable[[Request], Awaitable[Response]]
# Where a classifying request's time went, sent as ``x-<stage>-time`` headers (ms).
TIMING_STAGES = ("tokenization", "queue", "inference", "total")


def service_of(request: Request) -> Service:
    return cast(Service, request.app.state.service)


def result_dict(text: str, prediction: Prediction) -> dict[str, Any]:
    """One result: the original service's fields first, then ours."""
    d = prediction.to_dict()
    out = {
        "label": d["label"],
        "confidence": d["confidence"],
        "text": text,
        "label_zh": d["label_zh"],
        "scores": d["scores"],
        "truncated": d["truncated"],
    }
    if prediction.windows > 1:  # a long text read whole; short texts answer as before
        out["windows"] = prediction.windows
    return out


def timing_headers(timings: dict[str, float], started: float) -> dict[str, str]:
    """Where the time went, in milliseconds (header names as text-embeddings-inference's)."""
    headers = {f"x-{stage}-time": f"{seconds * 1000:.3f}" for stage, seconds in timings.items()}
    headers["x-total-time"] = f"{(time.perf_counter() - started) * 1000:.3f}"
    return headers


# -- the API -----------------------------------------------------------------------------------


async def analyze(request: Request) -> Response:
    started = time.perf_counter()
    service = service_of(request)
    settings = service.settings
    payload = await read_object(request, settings, '{"text": "..."}')
    text = check_text(payload.get("text"), "text", settings.max_text_chars)
    timings: dict[str, float] = {}
    predictions = await service.classify([text], request, timings)
    body = result_dict(text, predictions[0])
    return json_response(body, headers=timing_headers(timings, started))


async def analyze_batch(request: Request) -> Response:
    started = time.perf_counter()
    service = service_of(request)
    payload = await read_object(request, service.settings, '{"texts": ["..."]}')
    texts = check_texts(payload.get("texts"), "texts", service.settings)
    timings: dict[str, float] = {}
    predictions = await service.classify(texts, request, timings)
    results = [result_dict(t, p) for t, p in zip(texts, predictions, strict=True)]
    return json_response({"results": results}, headers=timing_headers(timings, started))


async def health(request: Request) -> Response:
    service = service_of(request)
    if service.started and not service.healthy:
        raise ApiError(UNHEALTHY, "the model worker died")
    return json_response({"status": "ok"})


async def ready(request: Request) -> Response:
    service = service_of(request)
    if not service.healthy:
        raise ApiError(UNHEALTHY, "the model worker is not running")
    if not service.ready:
        raise ApiError(NOT_READY, "the model is not ready yet")
    return json_response({"status": "ready"})


async def info(request: Request) -> Response:
    service = service_of(request)
    return json_response(
        {
            "version": __version__,
            "model": service.model_info(),
            "limits": service.limits(),
            "batching": {"call_overhead_tokens": service.call_overhead_tokens()},
            "auth": service.settings.api_key is not None,
            "feedback": service.feedback is not None,
            "ready": service.ready,
            "reloads": service.reloads,
        }
    )


async def metrics(request: Request) -> Response:
    registry = service_of(request).metrics
    return Response(registry.render(), media_type=registry.content_type)


# -- administration (the API key is checked by the edge middleware) -------------------------


async def reload(request: Request) -> Response:
    service = service_of(request)
    if service.settings.api_key is None:
        raise ApiError(ADMIN_DISABLED, "admin routes need the server to run with an API key")
    info = await service.reload()
    return json_response({"status": "reloaded", "model": info, "reloads": service.reloads})


# -- the web page and the API reference ------------------------------------------------------


async def index(request: Request) -> Response:
    page = WEB_DIR / "index.html"
    if page.is_file():
        return FileResponse(page, media_type="text/html; charset=utf-8")
    return HTMLResponse(PLACEHOLDER_PAGE)


async def docs(request: Request) -> Response:
    return FileResponse(WEB_DIR / "docs.html", media_type="text/html; charset=utf-8")


# -- the table ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Route:
    """One route: where, which function, and what /docs says about it.

    ``summary=None`` keeps a route out of the OpenAPI schema; ``hidden_methods`` are served
    but not documented (HEAD on the probes, for load balancers). ``admin`` routes need the
    API key and answer 403 on a server without one, so only a keyed server documents them;
    likewise a route that ``needs`` a setting is documented only where it is set.
    """

    path: str
    endpoint: Endpoint
    methods: tuple[str, ...] = ("GET",)
    summary: str | None = None
    hidden_methods: tuple[str, ...] = ()
    openapi: dict[str, Any] = field(default_factory=dict)
    admin: bool = False
    needs: str | None = None  # a setting without which /docs leaves the route out


def _analyze_docs(request: type[Any], result: type[Any]) -> dict[str, Any]:
    return {
        "openapi_extra": request_body(request),
        "responses": {200: {"model": result}, **error_responses(*ANALYZE_ERRORS)},
    }


RELOAD_ERRORS = (UNAUTHORIZED, ADMIN_DISABLED, RELOAD_IN_PROGRESS, RELOAD_FAILED, UNAVAILABLE)
ROUTES: tuple[Route, ...] = (
    Route("/analyze", analyze, ("POST",), "Classify one text",
          openapi=_analyze_docs(AnalyzeRequest, AnalyzeResult)),
    Route("/v1/analyze", analyze_batch, ("POST",), "Classify several texts; results in input order",
          openapi=_analyze_docs(BatchRequest, BatchResult)),
    Route("/health", health, summary="Liveness: 200 while the model worker runs",
          hidden_methods=("HEAD",)),
    Route("/ready", ready, summary="Readiness: 200 once the model is loaded and warmed",
          hidden_methods=("HEAD",)),
    Route("/info", info, summary="Model, version and every limit"),
    Route("/metrics", metrics, summary="Prometheus metrics"),
    Route("/v1/admin/reload", reload, ("POST",), "Reload the configured model without downtime",
          openapi={"responses": error_responses(*RELOAD_ERRORS)}, admin=True),
    Route("/v1/feedback", store_correction, ("POST",), "Store a correction (the latest wins)",
          openapi=STORE_DOCS, needs="feedback_db"),
    Route("/v1/feedback/stats", correction_stats, summary="Corrections: count, per label, since",
          openapi=STATS_DOCS, needs="feedback_db"),
    Route("/", index),
    Route("/docs", docs),
)  # fmt: skip
