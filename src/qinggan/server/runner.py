"""``run(settings, model)``: serve the app with uvicorn until SIGTERM/SIGINT."""

from __future__ import annotations

import copy
import logging
import signal
from collections.abc import Callable
from typing import Any

from ..interface import Model
from ..settings import Settings
from .app import create_app

log = logging.getLogger(__name__)

GRACE_S = 5  # on top of the request deadline, for stragglers at shutdown


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


def http_protocol(read_timeout_s: float) -> Any:
    """The bounded HTTP/1.1 protocol (:mod:`.http11`), or uvicorn's ``"auto"`` without
    httptools."""
    try:
        from .http11 import with_read_timeout
    except ImportError:
        return "auto"
    return with_read_timeout(read_timeout_s)


def run(settings: Settings, model: Model, loader: Callable[[], Model] | None = None) -> None:
    """Serve ``model`` (loaded from ``settings`` before binding, so load errors surface
    first; the CLI loads it while this module imports) until SIGTERM/SIGINT.

    uvicorn drains open requests on a signal; the lifespan then drains the batcher.
    A signal-initiated shutdown exits with status 0. SIGHUP (and ``POST /v1/admin/reload``)
    reload the model with ``loader`` (default: the one ``settings`` name) without downtime.
    """
    import logging.config

    import uvicorn

    logging.config.dictConfig(log_config(settings.log_level))
    log.info("settings: %s", settings.redacted())
    config = uvicorn.Config(
        create_app(settings, model, loader=loader, reload_on_sighup=True),
        host=settings.host,
        port=settings.port,
        log_config=None,
        log_level=settings.log_level,
        access_log=settings.access_log,
        server_header=False,
        lifespan="on",
        http=http_protocol(settings.read_timeout_s),
        # Every accepted request ends within its deadline; this only bounds stragglers
        # such as a client that trickles its body forever.
        timeout_graceful_shutdown=int(settings.request_timeout_s) + GRACE_S,
    )
    # uvicorn re-raises the signal it caught once it has shut down gracefully; with this
    # handler in place that re-raise is a no-op and the process exits 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _graceful_exit_noop)
    uvicorn.Server(config).run()


def _graceful_exit_noop(signum: int, frame: Any) -> None:
    """Placeholder handler: uvicorn installs its own while serving."""
