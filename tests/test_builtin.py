"""The bundles shipped inside the package: valid, loadable, and right on obvious reviews."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from qinggan.bundle import (
    BUILTIN_DIR,
    DEFAULT_BUILTIN,
    MODEL_ENV,
    builtin_models,
    load_bundle,
    resolve_model,
)

NAMES = ("accurate", "balanced", "fast", "ngram")
POSITIVE = "这家酒店服务很好，下次还来"
NEGATIVE = "质量太差了，用了两天就坏了，非常失望，再也不买了"


def shipped(name: str) -> bool:
    return (BUILTIN_DIR / name / "qinggan.json").is_file()


def run_cli(*args: str, model: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != MODEL_ENV}
    if model:
        env[MODEL_ENV] = model
    return subprocess.run(
        [sys.executable, "-m", "qinggan.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_at_least_one_builtin_is_shipped() -> None:
    assert builtin_models(), f"no bundle under {BUILTIN_DIR}"


def test_default_resolves_to_a_shipped_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MODEL_ENV, raising=False)
    path = resolve_model(None)
    assert path.parent == BUILTIN_DIR
    if shipped(DEFAULT_BUILTIN):
        assert path.name == DEFAULT_BUILTIN


def test_builtins_fit_the_size_budget() -> None:
    total = sum(f.stat().st_size for f in BUILTIN_DIR.rglob("*") if f.is_file())
    assert total <= 40 * 1024 * 1024, f"shipped models take {total / 1e6:.1f} MB (budget 40 MiB)"


@pytest.mark.parametrize("name", NAMES)
def test_builtin_bundle_is_valid(name: str) -> None:
    if not shipped(name):
        pytest.skip(f"the {name!r} model is not shipped in this build")
    bundle = load_bundle(BUILTIN_DIR / name)  # checks every sha256
    m = bundle.manifest
    assert m.labels == ("Negative", "Positive")
    assert m.training, "a built-in model must record how it was trained"
    assert m.metrics.get("test_accuracy"), "a built-in model must record its test accuracy"
    if m.source.get("kind") == "qinggan.train":  # the e5 recipe
        assert m.text_prefix == "query: " and m.training.get("config")
        assert 0.05 < m.temperature < 20


@pytest.mark.parametrize("name", NAMES)
def test_predict_obvious_reviews_with_the_builtin(name: str) -> None:
    if not shipped(name):
        pytest.skip(f"the {name!r} model is not shipped in this build")
    res = run_cli("predict", POSITIVE, NEGATIVE, model=name)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith("Positive\t"), lines
    assert lines[1].startswith("Negative\t"), lines


def test_predict_without_model_uses_the_default() -> None:
    res = run_cli("predict", POSITIVE, NEGATIVE)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith("Positive\t") and lines[1].startswith("Negative\t"), lines
