"""The HTTP service: ``create_app(settings, model)`` and ``run(settings, model)``.

One module per concern: :mod:`.app` builds the app from the route table in :mod:`.routes`;
:mod:`.service` holds the model, its batcher and the metrics; :mod:`.requests` reads and
checks request bodies; :mod:`.errors` turns the error table (:mod:`qinggan.errors`) into
responses; :mod:`.middleware` is the edge (security headers, API key, request metrics);
:mod:`.schemas` documents the shapes for /docs; :mod:`.http11` bounds the HTTP layer under
the app; :mod:`.runner` runs uvicorn.
"""

from __future__ import annotations

from .app import create_app
from .runner import run

__all__ = ["create_app", "run"]
