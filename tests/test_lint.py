"""The code stays lint- and format-clean (ruff, configured in pyproject.toml)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PATHS = ["src", "tests", "bench"]


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["check", "format"])
def test_ruff(command: list[str]) -> None:
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (it comes with the 'test' extra)")
    done = subprocess.run(
        [ruff, *command, *PATHS], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_is_configured_and_run_by_ci() -> None:
    """Strict by default with only convert/train relaxed; in the test extra; run by CI."""
    tomllib = pytest.importorskip("tomllib", reason="tomllib needs Python 3.11")
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    config = pyproject["tool"]["mypy"]
    assert config["strict"] is True and config["files"] == ["src/qinggan"]
    relaxed = sorted(
        module
        for override in config.get("overrides", [])
        if any(value is False for key, value in override.items() if key.startswith("disallow"))
        for module in override["module"]
    )
    assert relaxed == ["qinggan.convert.*", "qinggan.train.*"]
    test_extra = pyproject["project"]["optional-dependencies"]["test"]
    assert any(req.split(">")[0].strip() == "mypy" for req in test_extra)
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "python -m mypy" in ci.splitlines()


def test_functions_and_modules_stay_short() -> None:
    """No function over 80 lines, no module over 500 (issue 16: a newcomer reads each in
    one sitting)."""
    import ast

    too_long = []
    for path in sorted((ROOT / "src" / "qinggan").rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        lines = source.count("\n")
        if lines > 500:
            too_long.append(f"{path.name}: {lines} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > 80:
                    too_long.append(f"{path.name}:{node.lineno} {node.name}(): {length} lines")
    assert not too_long, "split these into named steps: " + "; ".join(too_long)
