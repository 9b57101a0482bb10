"""``create_app(settings, model)``: the ASGI app, built from the route table.

FastAPI (on Starlette, served by uvicorn) is here for the OpenAPI schema and ``/docs``;
the routes run as plain Starlette endpoints all the same (no dependency solving, no
response validation: they take the raw request and return finished bytes), so FastAPI
adds only its outer layers, ~10 µs of CPU per request (bench/findings.md, "FastAPI kept").
"""

from __future__ import annotations

import asyncio
import inspect
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib.resources import files
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import request_response
from starlette.staticfiles import StaticFiles

from .. import __version__
from ..interface import Model
from ..settings import Settings
from .errors import install_error_handlers
from .middleware import PUBLIC_PATHS, EdgeMiddleware
from .routes import ROUTES, TIMING_STAGES, WEB_DIR, Route
from .service import Service

OPENAPI_PATH = "/openapi.json"
TIMING_HEADERS = [f"x-{stage}-time" for stage in TIMING_STAGES]

# FastAPI >= 0.16x checks for OpenTelemetry providers on every request unless told not to.
_NO_TELEMETRY: dict[str, Any] = (
    {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters
    else {}
)


def create_app(
    settings: Settings | None = None,
    model: Model | None = None,
    *,
    loader: Callable[[], Model] | None = None,
    reload_on_sighup: bool = False,
) -> FastAPI:
    """The ASGI app serving ``model``; without one, its lifespan loads ``settings.model``.

    ``loader`` loads the model at start-up (without ``model``) and on every reload (default:
    the model ``settings`` name). Tests pass a fake or slowed model and loader here (any
    :class:`~qinggan.interface.Model`). ``reload_on_sighup`` makes SIGHUP reload the model
    (for the process's own server, not for apps run inside tests).
    """
    settings = settings or Settings.resolve()
    service = Service(settings, model, loader)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        if reload_on_sighup:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, service.reload_soon)
        try:
            yield
        finally:
            if reload_on_sighup:
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            await service.stop()

    app = FastAPI(
        title="qinggan 情感",
        version=__version__,
        description="Offline Chinese sentiment analysis. Errors are "
        '`{"error": {"code": ..., "message": ...}}`.',
        lifespan=lifespan,
        docs_url=None,  # served from local assets (routes.docs), not a CDN
        redoc_url=None,
        openapi_url=OPENAPI_PATH,
        **_NO_TELEMETRY,
    )
    app.state.service = service
    for route in ROUTES:
        needed = route.needs is None or getattr(settings, route.needs) is not None
        _register(
            app, route, documented=needed and (not route.admin or settings.api_key is not None)
        )
    _mount_static(app)
    install_error_handlers(app)
    _add_middleware(app, settings, service)
    _skip_fastapi_handlers(app)
    if settings.api_key is not None:
        _document_api_key(app)
    return app


def _register(app: FastAPI, route: Route, *, documented: bool = True) -> None:
    documented = documented and route.summary is not None
    app.add_api_route(
        route.path,
        route.endpoint,
        methods=list(route.methods),
        summary=route.summary,
        response_model=None,
        include_in_schema=documented,
        **route.openapi,
    )
    if route.hidden_methods:
        app.add_api_route(
            route.path, route.endpoint, methods=list(route.hidden_methods), include_in_schema=False
        )


def _swagger_assets() -> Path | None:
    """Swagger UI's files, shipped by the fastapi-offline package (no CDN needed)."""
    try:
        folder = Path(str(files("fastapi_offline") / "static"))
    except (ImportError, TypeError):
        return None
    return folder if (folder / "swagger-ui-bundle.js").is_file() else None


def _mount_static(app: FastAPI) -> None:
    swagger_dir = _swagger_assets()
    if swagger_dir is not None:  # mounted before /static, which would shadow it
        app.mount("/static/swagger", StaticFiles(directory=swagger_dir), name="swagger")
    if WEB_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")


def _add_middleware(app: FastAPI, settings: Settings, service: Service) -> None:
    """CORS (only when origins are set) inside the edge middleware (headers, key, metrics)."""
    if settings.cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type"],
            expose_headers=["Retry-After", *TIMING_HEADERS],
            max_age=600,
        )
    app.add_middleware(
        EdgeMiddleware,
        metrics=service.metrics,
        api_key=settings.api_key,
        routes=frozenset({OPENAPI_PATH, *(route.path for route in ROUTES)}),
        cors=bool(settings.cors_origins),
    )


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
    """Run the routes as plain Starlette endpoints.

    They take the raw Request and return a finished Response, so FastAPI's per-request
    dependency solving and response validation would be pure overhead; the routes stay
    registered with FastAPI so that /docs and /openapi.json still describe them.
    """
    for route in app.router.routes:
        if isinstance(route, APIRoute):
            route.app = request_response(route.endpoint)
