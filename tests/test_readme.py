"""The README's two fresh-machine commands stay in step with what CI runs."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section)


def test_readme_has_run_and_test_commands() -> None:
    run, test = readme_commands()[:2]
    assert "pip install ." in run and run.endswith("qinggan serve")
    assert "pytest" in test


def test_ci_runs_the_readme_test_command() -> None:
    test = readme_commands()[1]
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert test in ci.splitlines()
