"""The ``qinggan`` command line.

Each command is a thin wrapper in its own module: heavy modules (the server, the
converter, training) are imported inside the command body, so ``qinggan predict`` stays
fast and never imports torch. User mistakes end with a one-line ``error: ...`` and a
non-zero exit code, never a traceback.
"""

from __future__ import annotations

from ..errors import run_main
from . import (  # noqa: F401  (register commands)
    adapt,
    convert,
    evaluate,
    feedback,
    info,
    predict,
    serve,
    train,
)
from .app import app

__all__ = ["app", "main"]


def main() -> None:
    """Entry point: run the app, turning qinggan errors into one-line messages."""
    run_main(app)
