"""The serving path must never import torch or transformers."""

from __future__ import annotations

import subprocess
import sys

from qinggan.bundle import Bundle

SERVING_MODULES = [
    "qinggan",
    "qinggan.engine",
    "qinggan.bundle",
    "qinggan.tokenization",
    "qinggan.cli",
]
OPTIONAL_SERVING = [
    "qinggan.server",
    "qinggan.batching",
    "qinggan.settings",
    "qinggan.metrics",
    "qinggan.files",
    "qinggan.evaluate",
]


def test_import_and_predict_without_torch(tiny_bundle: Bundle) -> None:
    code = (
        "import importlib, importlib.util, sys\n"
        f"for m in {SERVING_MODULES!r}: importlib.import_module(m)\n"
        f"for m in {OPTIONAL_SERVING!r}:\n"
        "    if importlib.util.find_spec(m) is not None: importlib.import_module(m)\n"
        "import qinggan\n"
        f"clf = qinggan.load({str(tiny_bundle.path)!r})\n"
        "assert clf('很好').label == 'Positive'\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers'))\n"
        "print(','.join(bad))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "", f"serving path imported: {res.stdout.strip()}"


def test_detector_can_fail() -> None:
    """The check above really sees torch when something imports it."""
    code = "import sys, torch; print(int('torch' in sys.modules))"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.stdout.strip() == "1"
