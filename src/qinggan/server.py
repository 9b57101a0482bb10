"""The HTTP service: ``create_app(settings, classifier=None)`` and ``run(settings)``.

Built on FastAPI (on Starlette, served by uvicorn with uvloop/httptools where installed)
for one reason: it gives the OpenAPI schema and ``/docs`` for free. The hot routes stay
lean all the same: they take the raw :class:`~starlette.requests.Request`, read the body
themselves (so the byte limit holds *while* reading), parse it with orjson, validate by
hand (exact status codes, no pydantic round trip) and return pre-serialised bytes.
Security headers, auth and metrics live in one pure-ASGI middleware, not a stack of
``BaseHTTPMiddleware`` layers.

Every error is JSON ``{"error": {"code": ..., "message": ...}}`` and never carries a
stack trace, exception text or file path. What happens below the app (request-head cap,
read timeout, bytes that are not HTTP) is in :mod:`qinggan.protocol`.
"""

from __future__ import annotations

import asyncio
import copy
import hmac
import inspect
import logging
import math
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import request_response
from starlette.staticfiles import StaticFiles

from . import __version__
from .batching import (
    Batcher,
    ClientGone,
    DeadlineExceeded,
    EngineUnavailable,
    InferenceFailed,
    InferenceModel,
    QueueFull,
)
from .engine import Prediction
from .feedback import routes as feedback_routes
from .metrics import Metrics
from .planning import measure_batch_overhead
from .protocol import DOCS_HEADERS, STRICT_HEADERS, bounded_http_protocol, error_bytes
from .settings import Settings

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).parent / "web"
TEST_DELAY_ENV = "QINGGAN_TEST_INFER_DELAY_MS"  # test-only: slows every model batch
RETRY_AFTER_S = "1"
INLINE_TOKENIZE_CHARS = 4096  # bigger requests are tokenised on a helper thread
WARMUP_TIMEOUT_S = 600.0  # a cold big model may be slow; requests use their own deadline


PUBLIC_PATHS = frozenset({"/health", "/ready", "/", "/docs", "/openapi.json"})
PUBLIC_PREFIXES = ("/static/",)  # the web page's own files: it must load to ask for a key
API_ROUTES = frozenset(
    {
        "/",
        "/analyze",
        "/v1/analyze",
        "/health",
        "/ready",
        "/info",
        "/metrics",
        "/docs",
        "/openapi.json",
        *feedback_routes.ROUTES,
    }
)
ERROR_CODES = {
    400: "invalid_text",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    500: "internal_error",
    503: "unavailable",
    504: "timeout",
}


# FastAPI >= 0.16x checks for OpenTelemetry providers on every request unless told not to.
_NO_TELEMETRY: dict[str, Any] = (
    {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters
    else {}
)


# -- errors ------------------------------------------------------------------------------


class ApiError(Exception):
    """An error answer: HTTP status, stable machine code, human message."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers

    def response(self) -> Response:
        return error_response(self.status, self.code, self.message, self.headers)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    return json_response({"error": {"code": code, "message": message}}, status, headers)


# -- documentation models (OpenAPI only; requests are validated by hand) -----------------


class AnalyzeRequest(BaseModel):
    text: str = Field(description="One review; at most max_text_chars characters.")


class BatchRequest(BaseModel):
    texts: list[str] = Field(description="Reviews, at most max_batch_texts of them.")


class AnalyzeResult(BaseModel):
    label: str = Field(examples=["Positive"])
    confidence: float = Field(examples=[0.9931])
    text: str
    label_zh: str = Field(examples=["正面"])
    scores: dict[str, float]
    truncated: bool = Field(description="True if the text was cut to the model's token limit.")


class BatchResult(BaseModel):
    results: list[AnalyzeResult]


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


def _request_body(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema()
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": schema}},
        }
    }


ERROR_DOCS = {
    400: "invalid_text: text missing, not a string, empty or whitespace only",
    401: "unauthorized: API key missing or wrong",
    413: "text_too_long (over max_text_chars) or body_too_large (over max_body_bytes)",
    415: "unsupported_media_type: the body is not declared as JSON",
    422: "invalid_json, invalid_request (wrong shape or types) or too_many_texts",
    500: "internal_error: the model failed on this batch",
    503: "overloaded (queue full, see Retry-After) or unavailable (worker not running)",
    504: "timeout: waited longer than request_timeout_s",
}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorBody, "description": ERROR_DOCS[code]} for code in codes}


# -- the edge: security headers, auth, metrics -------------------------------------------

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class EdgeMiddleware:
    """Pure ASGI: adds security headers, checks the API key, records request metrics."""

    def __init__(
        self, app: ASGIApp, *, metrics: Metrics, api_key: str | None, cors: bool = False
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.api_key = api_key.encode() if api_key else None
        self.cors = cors

    def _authorized(self, scope: Scope) -> bool:
        assert self.api_key is not None
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                if scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.api_key):
                    return True
            elif name == b"x-api-key" and hmac.compare_digest(value.strip(), self.api_key):
                return True
        return False

    def _needs_key(self, scope: Scope) -> bool:
        path = scope["path"]
        if self.api_key is None or path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
            return False
        if self.cors and scope["method"] == "OPTIONS":  # CORS preflight carries no credentials
            return False
        return not self._authorized(scope)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path in API_ROUTES:
            route = path
        elif path.startswith("/static/"):
            route = "/static"
        else:
            route = "other"
        extra = DOCS_HEADERS if path == "/docs" else STRICT_HEADERS
        status = 500
        start = time.perf_counter()

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        try:
            if self._needs_key(scope):
                body = error_bytes(
                    "unauthorized",
                    "an API key is required: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
                )
                await send_with_headers(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"www-authenticate", b'Bearer realm="qinggan"'),
                        ],
                    }
                )
                await send_with_headers({"type": "http.response.body", "body": body})
            else:
                await self.app(scope, receive, send_with_headers)
        finally:
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.request_duration.labels(route).observe(time.perf_counter() - start)


# -- the service ---------------------------------------------------------------------------


class _DelayedModel:
    """Test-only wrapper: sleeps before every model call (``QINGGAN_TEST_INFER_DELAY_MS``)."""

    def __init__(self, model: Any, delay_s: float) -> None:
        self._model = model
        self._delay = delay_s

    def infer(self, batch: Sequence[Any]) -> Any:
        time.sleep(self._delay)
        return self._model.infer(batch)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


def _with_test_hooks(model: Any) -> Any:
    raw = os.environ.get(TEST_DELAY_ENV)
    if raw:
        log.warning("%s=%s: every model batch is slowed down (testing only)", TEST_DELAY_ENV, raw)
        return _DelayedModel(model, float(raw) / 1000.0)
    return model


def _overhead_tokens(model: Any) -> float:
    """A loaded classifier measures (and keeps) its own; any other model is measured here."""
    known = getattr(model, "batch_overhead_tokens", None)
    return float(known) if known is not None else measure_batch_overhead(model)


class Service:
    """What the routes share: settings, the model, its batcher and the metrics."""

    def __init__(self, settings: Settings, model: InferenceModel | None) -> None:
        self.settings = settings
        self.model: Any = model
        self.metrics = Metrics()
        self.batcher: Batcher | None = None
        self.batch_overhead_tokens = math.inf
        self.ready = False
        self.feedback = feedback_routes.StoreWorker.configured(settings.feedback_db)

    async def start(self) -> None:
        s = self.settings
        if self.feedback is not None:
            await self.feedback.open()
        if self.model is None:
            self.model = await asyncio.to_thread(s.load_model)
        self.batch_overhead_tokens = await asyncio.to_thread(_overhead_tokens, self.model)
        if math.isfinite(self.batch_overhead_tokens):
            log.info("one model call costs as much as %.0f tokens", self.batch_overhead_tokens)
        else:
            log.info("model calls cost next to nothing: batches are never split for padding")
        self.batcher = Batcher(
            _with_test_hooks(self.model),
            batch_overhead_tokens=self.batch_overhead_tokens,
            max_batch_size=s.max_batch_size,
            max_batch_tokens=s.max_batch_tokens,
            max_wait_ms=s.max_wait_ms,
            max_queue=s.max_queue,
            metrics=self.metrics,
        )
        await self.batcher.start()
        # Warm-up through the whole path (tokenizer, batcher, worker thread, model).
        await self.batcher.submit(
            self.model.tokenize(["预热 warm-up", "预热" * 32]), WARMUP_TIMEOUT_S
        )
        self.ready = True
        log.info("model %s ready", self.model_info().get("name", "?"))

    async def stop(self) -> None:
        self.ready = False
        if self.batcher is not None:
            await self.batcher.close()
        if self.feedback is not None:
            await self.feedback.close()

    @property
    def healthy(self) -> bool:
        return self.batcher is not None and self.batcher.healthy

    def model_info(self) -> dict[str, Any]:
        info = getattr(self.model, "info", None)
        return dict(info()) if callable(info) else {"name": type(self.model).__name__}

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

    async def classify(
        self, texts: list[str], request: Request, timings: dict[str, float]
    ) -> list[Prediction]:
        """Tokenise, queue and wait; abandons the request if its client disconnects.

        ``timings`` receives the seconds spent tokenising, queued and in the model.
        """
        if self.batcher is None or not self.ready:
            raise ApiError(503, "unavailable", "the model is not ready yet", _retry())
        # Refuse before tokenising (the batcher's own rule, checked early): under overload
        # most requests are refused, and tokenising them first starves the admitted ones.
        queued = self.batcher.queued
        if queued and queued + len(texts) > self.batcher.max_queue:
            self.metrics.rejected.labels("queue_full").inc()
            raise ApiError(503, "overloaded", "the server is busy; retry shortly", _retry())
        start = time.perf_counter()
        if sum(map(len, texts)) > INLINE_TOKENIZE_CHARS:  # keep the event loop responsive
            encoded = await asyncio.to_thread(self.model.tokenize, texts)
        else:
            encoded = self.model.tokenize(texts)
        timings["tokenization"] = time.perf_counter() - start
        self.metrics.tokenization_duration.observe(timings["tokenization"])
        try:
            future = self.batcher.submit(encoded, self.settings.request_timeout_s, timings)
        except QueueFull:
            raise ApiError(
                503, "overloaded", "the server is busy; retry shortly", _retry()
            ) from None
        except EngineUnavailable:
            raise ApiError(
                503, "unavailable", "the model worker is not running", _retry()
            ) from None
        watcher = asyncio.ensure_future(request.receive())
        watcher.add_done_callback(lambda task: _abandon_if_gone(task, future))
        try:
            return await future
        except DeadlineExceeded:
            raise ApiError(
                504,
                "timeout",
                f"the request waited more than {self.settings.request_timeout_s:g} s",
            ) from None
        except InferenceFailed:
            raise ApiError(500, "internal_error", "the model failed on this request") from None
        except EngineUnavailable:
            raise ApiError(
                503, "unavailable", "the model worker is not running", _retry()
            ) from None
        except ClientGone:
            raise ApiError(499, "client_closed_request", "the client went away") from None
        finally:
            watcher.cancel()


def _retry() -> dict[str, str]:
    return {"Retry-After": RETRY_AFTER_S}


def timing_headers(timings: dict[str, float], started: float) -> dict[str, str]:
    """Where the time went, in milliseconds (header names as text-embeddings-inference's)."""
    headers = {f"x-{stage}-time": f"{seconds * 1000:.3f}" for stage, seconds in timings.items()}
    headers["x-total-time"] = f"{(time.perf_counter() - started) * 1000:.3f}"
    return headers


def _abandon_if_gone(watcher: asyncio.Future[Message], future: asyncio.Future[Any]) -> None:
    if watcher.cancelled() or watcher.exception() is not None or future.done():
        return
    if watcher.result().get("type") == "http.disconnect":
        future.set_exception(ClientGone("client disconnected"))


# -- request parsing -------------------------------------------------------------------------


async def read_json(request: Request, limit: int) -> Any:
    """The body as JSON; 415 unless JSON, 413 past ``limit`` bytes (checked while reading)."""
    content_type = request.headers.get("content-type", "")
    mime = content_type.partition(";")[0].strip().lower()
    if mime != "application/json" and not (
        mime.startswith("application/") and mime.endswith("+json")
    ):
        raise ApiError(
            415, "unsupported_media_type", "send a JSON body with 'Content-Type: application/json'"
        )
    too_large = ApiError(413, "body_too_large", f"the request body is over {limit} bytes")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
    except ClientDisconnect:
        raise ApiError(499, "client_closed_request", "the client went away") from None
    try:
        return orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError:
        raise ApiError(422, "invalid_json", "the request body is not valid JSON") from None


async def read_object(request: Request, limit: int, example: str) -> dict[str, Any]:
    """The body as a JSON object (see :func:`read_json`); 422 naming ``example`` otherwise."""
    payload = await read_json(request, limit)
    if not isinstance(payload, dict):
        raise ApiError(422, "invalid_request", f"the body must be an object: {example}")
    return payload


def check_text(value: Any, where: str, limit: int) -> str:
    if value is None:
        raise ApiError(400, "invalid_text", f"'{where}' is missing")
    if not isinstance(value, str):
        raise ApiError(400, "invalid_text", f"'{where}' must be a string")
    if not value.strip():
        raise ApiError(400, "invalid_text", f"'{where}' is empty or only whitespace")
    if len(value) > limit:
        raise ApiError(
            413,
            "text_too_long",
            f"'{where}' has {len(value)} characters; the limit is {limit}",
        )
    return value


def result_dict(text: str, prediction: Prediction) -> dict[str, Any]:
    d = prediction.to_dict()
    return {
        "label": d["label"],
        "confidence": d["confidence"],
        "text": text,
        "label_zh": d["label_zh"],
        "scores": d["scores"],
        "truncated": d["truncated"],
    }


# -- the app -------------------------------------------------------------------------------

PLACEHOLDER_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>qinggan</title></head><body><h1>情感 qinggan</h1>
<p>The web page is not installed. The API is at <a href="docs">/docs</a>.</p></body></html>"""


def _swagger_assets() -> Path | None:
    """Swagger UI's files, shipped by the fastapi-offline package (no CDN needed)."""
    try:
        from importlib.resources import files

        folder = Path(str(files("fastapi_offline") / "static"))
    except (ImportError, TypeError):
        return None
    return folder if (folder / "swagger-ui-bundle.js").is_file() else None


def create_app(
    settings: Settings | None = None, classifier: InferenceModel | None = None
) -> FastAPI:
    """The ASGI app. Without ``classifier`` the lifespan loads ``settings.model``."""
    settings = settings or Settings.resolve()
    service = Service(settings, classifier)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(
        title="qinggan 情感",
        version=__version__,
        description="Offline Chinese sentiment analysis. Errors are "
        '`{"error": {"code": ..., "message": ...}}`.',
        lifespan=lifespan,
        docs_url=None,  # served below from local assets, not a CDN
        redoc_url=None,
        openapi_url="/openapi.json",
        **_NO_TELEMETRY,
    )
    app.state.service = service
    limit_chars = settings.max_text_chars

    @app.post(
        "/analyze",
        summary="Classify one text",
        response_model=None,
        openapi_extra=_request_body(AnalyzeRequest),
        responses={
            200: {"model": AnalyzeResult},
            **_errors(400, 401, 413, 415, 422, 500, 503, 504),
        },
    )
    async def analyze(request: Request) -> Response:
        started = time.perf_counter()
        try:
            payload = await read_object(request, settings.max_body_bytes, '{"text": "..."}')
            text = check_text(payload.get("text"), "text", limit_chars)
            timings: dict[str, float] = {}
            predictions = await service.classify([text], request, timings)
            body = result_dict(text, predictions[0])
            return json_response(body, headers=timing_headers(timings, started))
        except ApiError as error:
            return error.response()

    @app.post(
        "/v1/analyze",
        summary="Classify several texts; results in input order",
        response_model=None,
        openapi_extra=_request_body(BatchRequest),
        responses={200: {"model": BatchResult}, **_errors(400, 401, 413, 415, 422, 500, 503, 504)},
    )
    async def analyze_batch(request: Request) -> Response:
        started = time.perf_counter()
        try:
            payload = await read_object(request, settings.max_body_bytes, '{"texts": ["..."]}')
            texts = payload.get("texts")
            if texts is None:
                raise ApiError(400, "invalid_text", "'texts' is missing")
            if not isinstance(texts, list):
                raise ApiError(422, "invalid_request", "'texts' must be a list of strings")
            if not texts:
                raise ApiError(400, "invalid_text", "'texts' is empty")
            if len(texts) > settings.max_batch_texts:
                raise ApiError(
                    422,
                    "too_many_texts",
                    f"'texts' has {len(texts)} items; the limit is {settings.max_batch_texts}",
                )
            for i, text in enumerate(texts):
                check_text(text, f"texts[{i}]", limit_chars)
            timings: dict[str, float] = {}
            predictions = await service.classify(texts, request, timings)
            results = [result_dict(t, p) for t, p in zip(texts, predictions, strict=True)]
            return json_response({"results": results}, headers=timing_headers(timings, started))
        except ApiError as error:
            return error.response()

    @app.get("/health", summary="Liveness: 200 while the model worker runs")
    async def health(request: Request) -> Response:
        if service.batcher is not None and not service.healthy:
            return error_response(503, "unhealthy", "the model worker died", _retry())
        return json_response({"status": "ok"})

    @app.get("/ready", summary="Readiness: 200 once the model is loaded and warmed")
    async def ready(request: Request) -> Response:
        if not service.healthy:
            return error_response(503, "unhealthy", "the model worker is not running", _retry())
        if not service.ready:
            return error_response(503, "not_ready", "the model is not ready yet", _retry())
        return json_response({"status": "ready"})

    for probe in (health, ready):  # HEAD too, for load balancers (not in the schema)
        app.add_api_route(f"/{probe.__name__}", probe, methods=["HEAD"], include_in_schema=False)

    @app.get("/info", summary="Model, version and every limit")
    async def info(request: Request) -> Response:
        return json_response(
            {
                "version": __version__,
                "model": service.model_info() if service.model is not None else None,
                "limits": service.limits(),
                "batching": {
                    "call_overhead_tokens": (
                        round(service.batch_overhead_tokens, 1)
                        if math.isfinite(service.batch_overhead_tokens)
                        else None
                    ),
                },
                "auth": settings.api_key is not None,
                "feedback": service.feedback is not None,
                "ready": service.ready,
            }
        )

    @app.get("/metrics", summary="Prometheus metrics")
    async def metrics(request: Request) -> Response:
        return Response(service.metrics.render(), media_type=service.metrics.content_type)

    feedback_routes.add_routes(app, service)
    web_dir = WEB_DIR

    @app.get("/", include_in_schema=False)
    async def index(request: Request) -> Response:
        page = web_dir / "index.html"
        if page.is_file():
            return FileResponse(page, media_type="text/html; charset=utf-8")
        return HTMLResponse(PLACEHOLDER_PAGE)

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> Response:
        return FileResponse(web_dir / "docs.html", media_type="text/html; charset=utf-8")

    swagger_dir = _swagger_assets()
    if swagger_dir is not None:  # mounted before /static, which would shadow it
        app.mount("/static/swagger", StaticFiles(directory=swagger_dir), name="swagger")
    if web_dir.is_dir():
        app.mount("/static", StaticFiles(directory=web_dir), name="static")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = ERROR_CODES.get(exc.status_code, "http_error")
        messages = {404: "no such route; see /docs", 405: "method not allowed on this route"}
        message = messages.get(exc.status_code, code.replace("_", " "))
        return error_response(exc.status_code, code, message, dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        return error_response(422, "invalid_request", "the request does not match the schema")

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        # Starlette runs this handler in its outermost middleware, outside EdgeMiddleware,
        # so the security headers must be added here.
        headers = {name.decode(): value.decode() for name, value in STRICT_HEADERS}
        return error_response(500, "internal_error", "internal server error", headers)

    if settings.cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type"],
            expose_headers=[
                "Retry-After",
                *(f"x-{stage}-time" for stage in ("tokenization", "queue", "inference", "total")),
            ],
            max_age=600,
        )
    app.add_middleware(
        EdgeMiddleware,
        metrics=service.metrics,
        api_key=settings.api_key,
        cors=bool(settings.cors_origins),
    )
    _skip_fastapi_handlers(app)
    if settings.api_key is not None:
        _document_api_key(app)
    return app


def _document_api_key(app: FastAPI) -> None:
    """Declare the key in the OpenAPI schema so /docs can send it ("Authorize")."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            schema.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            }
            for path, operations in schema.get("paths", {}).items():
                if path not in PUBLIC_PATHS:
                    for operation in operations.values():
                        operation["security"] = [{"bearer": []}, {"apiKey": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _skip_fastapi_handlers(app: FastAPI) -> None:
    """Run our routes as plain Starlette endpoints.

    They take the raw Request and return a finished Response, so FastAPI's per-request
    dependency solving and response validation would be pure overhead; the routes stay
    registered with FastAPI so that /docs and /openapi.json still describe them.
    """
    for route in app.router.routes:
        if isinstance(route, APIRoute) and route.path in API_ROUTES:
            route.app = request_response(route.endpoint)


# -- running -------------------------------------------------------------------------------


def log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging setup plus the ``qinggan`` logger on the same handler."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["qinggan"] = {
        "handlers": ["default"],
        "level": level.upper() if level != "trace" else "DEBUG",
        "propagate": False,
    }
    return config


def run(settings: Settings, classifier: Any) -> None:
    """Serve ``classifier`` (loaded from ``settings`` before binding, so load errors surface
    first; the CLI loads it while this module imports) until SIGTERM/SIGINT.

    uvicorn drains open requests on a signal; the lifespan then drains the batcher.
    A signal-initiated shutdown exits with status 0.
    """
    import logging.config

    import uvicorn

    logging.config.dictConfig(log_config(settings.log_level))
    log.info("settings: %s", settings.redacted())
    app = create_app(settings, classifier)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        log_level=settings.log_level,
        access_log=settings.access_log,
        server_header=False,
        lifespan="on",
        http=bounded_http_protocol(settings.read_timeout_s),
        # Every accepted request ends within its deadline; this only bounds stragglers
        # such as a client that trickles its body forever.
        timeout_graceful_shutdown=int(settings.request_timeout_s) + 5,
    )
    # uvicorn re-raises the signal it caught once it has shut down gracefully; with this
    # handler in place that re-raise is a no-op and the process exits 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _graceful_exit_noop)
    uvicorn.Server(config).run()


def _graceful_exit_noop(signum: int, frame: Any) -> None:
    """Placeholder handler: uvicorn installs its own while serving."""
