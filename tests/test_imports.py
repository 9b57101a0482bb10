"""The serving path imports none of the training-side packages.

``qinggan.load()``, ``predict``, the CLI's ``predict`` (texts and files) and the server
must run on the serving install, which has no torch, transformers, sklearn, onnx, ray or
matplotlib, and must not pull in ``qinggan.train`` or ``qinggan.convert`` (which need
them). Each check runs in a fresh interpreter and reads its ``sys.modules`` at the end.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from qinggan.bundle import Bundle

FORBIDDEN_PACKAGES = ("torch", "transformers", "sklearn", "onnx", "ray", "matplotlib")
FORBIDDEN_MODULES = ("qinggan.train", "qinggan.convert")

# Appended to every snippet: prints the forbidden modules that were imported, one line.
REPORT = f"""
import sys as _sys
_bad = sorted(
    m for m in _sys.modules
    if m.split(".")[0] in {FORBIDDEN_PACKAGES!r}
    or any(m == p or m.startswith(p + ".") for p in {FORBIDDEN_MODULES!r})
)
print("imported:" + ",".join(_bad))
"""

SERVING_MODULES = [
    "qinggan",
    "qinggan.engine",
    "qinggan.ensemble",
    "qinggan.bundle",
    "qinggan.tokenization",
    "qinggan.planning",
    "qinggan.interface",
    "qinggan.options",
    "qinggan.cli",
    "qinggan.server",
    "qinggan.batching",
    "qinggan.protocol",
    "qinggan.settings",
    "qinggan.metrics",
    "qinggan.files",
]


def imported_by(code: str) -> list[str]:
    """The forbidden modules that ``code`` imports, run in a fresh interpreter."""
    res = subprocess.run(
        [sys.executable, "-c", code + REPORT], capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr
    line = res.stdout.strip().splitlines()[-1]
    assert line.startswith("imported:"), res.stdout
    return [m for m in line.removeprefix("imported:").split(",") if m]


def test_import_and_predict_without_torch(tiny_bundle: Bundle) -> None:
    code = (
        "import importlib, importlib.util, pkgutil\n"
        f"for m in {SERVING_MODULES!r}:\n"
        "    if importlib.util.find_spec(m) is None: continue\n"
        "    mod = importlib.import_module(m)\n"
        "    if m != 'qinggan' and hasattr(mod, '__path__'):  # a package: all its modules\n"
        "        for info in pkgutil.walk_packages(mod.__path__, m + '.'):\n"
        "            if not info.name.endswith('.__main__'):\n"
        "                importlib.import_module(info.name)\n"
        "import qinggan\n"
        f"clf = qinggan.load({str(tiny_bundle.path)!r})\n"
        "assert clf('很好').label == 'Positive'\n"
        "assert [p.label for p in clf.predict(['太差了', '很好'])] == ['Negative', 'Positive']\n"
    )
    assert imported_by(code) == [], "the serving path imported training-side modules"


def test_builtin_models_load_without_torch() -> None:
    code = (
        "import qinggan\n"
        "from qinggan.bundle import builtin_models\n"
        "assert qinggan.load(threads=1)('很好').label == 'Positive'\n"
        "for name in builtin_models(): qinggan.load(name, threads=1).predict(['很好'])\n"
    )
    assert imported_by(code) == []


def test_cli_predict_without_torch(tiny_bundle: Bundle, tmp_path: Path) -> None:
    """``qinggan predict`` on texts and on a file, through the real entry point."""
    src = tmp_path / "in.csv"
    src.write_text("text\n很好\n太差了\n", encoding="utf-8")
    model = ["-m", str(tiny_bundle.path), "--threads", "1"]
    runs = [
        ["predict", *model, "很好"],
        ["predict", *model, "-i", str(src), "-o", str(tmp_path / "out.parquet"), "-q"],
    ]
    code = (
        "import sys\n"
        "from qinggan.cli import main\n"
        f"for args in {runs!r}:\n"
        "    sys.argv = ['qinggan', *args]\n"
        "    try:\n"
        "        main()\n"
        "    except SystemExit as exc:\n"
        "        assert exc.code in (0, None), exc.code\n"
    )
    assert imported_by(code) == []
    assert (tmp_path / "out.parquet").is_file()


def test_server_without_torch(tiny_bundle: Bundle) -> None:
    """The app starts (its lifespan loads and warms the model) and answers."""
    code = (
        "from fastapi.testclient import TestClient\n"
        "from qinggan.server import create_app\n"
        "from qinggan.settings import Settings\n"
        f"app = create_app(Settings(model={str(tiny_bundle.path)!r}, threads=1))\n"
        "with TestClient(app) as client:\n"
        "    res = client.post('/analyze', json={'text': '很好'})\n"
        "    assert res.status_code == 200 and res.json()['label'] == 'Positive', res.text\n"
    )
    assert imported_by(code) == []


def test_evaluate_without_torch() -> None:
    """``qinggan eval`` reads labelled data with ``qinggan.train.data`` (torch-free), but
    imports none of the training-side packages."""
    found = imported_by("import qinggan.evaluate, qinggan.cli.evaluate\n")
    assert [m for m in found if m.split(".")[0] != "qinggan"] == []


def test_detector_can_fail() -> None:
    """The check above really sees torch when something imports it."""
    code = "import sys, torch; print(int('torch' in sys.modules))"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.stdout.strip() == "1"


def test_report_names_forbidden_imports() -> None:
    """The report lists a forbidden package and a training-side qinggan module, and not
    look-alikes (``onnxruntime`` is not ``onnx``, ``qinggan.cli.train`` is allowed)."""
    code = "import onnxruntime, qinggan.cli.train, torch, qinggan.train.data\n"
    found = imported_by(code)
    assert "torch" in found and "qinggan.train.data" in found
    assert "onnxruntime" not in found and "qinggan.cli.train" not in found
