"""``qinggan serve``: the HTTP service; its options are the fields of ``Settings``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..settings import Settings
from .app import app, dataclass_options

if TYPE_CHECKING:
    from ..interface import Model


@app.command()
@dataclass_options(Settings, unset=True)
def serve(**values: Any) -> None:
    """Run the HTTP service: web page at /, API at /analyze and /v1/analyze, docs at /docs.

    Every option is also an env var QINGGAN_<OPTION> (e.g. QINGGAN_MAX_QUEUE); flags win.
    """
    settings = Settings.resolve(values)
    run, model = _load_while_importing(settings)
    run(settings, model)


def _load_while_importing(settings: Settings) -> tuple[Any, Model]:
    """The server's ``run`` and the model: the model loads (ONNX Runtime releases the GIL)
    while the web stack imports."""
    from concurrent.futures import ThreadPoolExecutor

    from .. import engine  # noqa: F401  (imported here, not inside the thread)

    with ThreadPoolExecutor(max_workers=1) as pool:
        loading = pool.submit(settings.load_model)
        from ..server import run

        return run, loading.result()
