"""``qinggan serve`` with a slowed-down model, for end-to-end tests that need requests to
queue up: ``python tests/slowserve.py DELAY_MS [serve options]``.

It resolves the same settings as ``qinggan serve`` (``--name value`` flags, then
``QINGGAN_*`` variables, then defaults), loads the model they name and serves it wrapped
in :class:`fakes.SlowModel` through :func:`qinggan.server.run` (reloads wrap it too).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from fakes import SlowModel  # noqa: E402
from qinggan.server import run  # noqa: E402
from qinggan.settings import Settings  # noqa: E402

# serve's flags whose names differ from the settings fields they set
FLAG_FIELDS = {"request_timeout": "request_timeout_s", "read_timeout": "read_timeout_s"}


def overrides(args: list[str]) -> dict[str, str]:
    """``--max-batch-size 4 --port 80`` -> ``{"max_batch_size": "4", "port": "80"}``."""
    pairs = dict(zip(args[::2], args[1::2], strict=True))
    names = {flag.removeprefix("--").replace("-", "_"): value for flag, value in pairs.items()}
    return {FLAG_FIELDS.get(name, name): value for name, value in names.items()}


def main(argv: list[str]) -> None:
    delay_ms, *args = argv
    given = overrides(args)
    environ = {f"QINGGAN_{name.upper()}": value for name, value in given.items()}
    settings = Settings.resolve(environ={**os.environ, **environ})

    def load() -> SlowModel:  # at start-up and on every reload
        return SlowModel(settings.load_model(), float(delay_ms) / 1000.0)

    run(settings, load(), loader=load)


if __name__ == "__main__":
    main(sys.argv[1:])
