"""Shared fixtures: the tiny test bundle (one and two variants) and ../shared/data."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from qinggan.bundle import Bundle, write_bundle
from qinggan.testing import make_tiny_bundle

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("QINGGAN_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    """A bag-of-characters bundle: 好/棒/喜欢 lean Positive, 差/烂/失望 Negative."""
    return make_tiny_bundle(tmp_path_factory.mktemp("tiny") / "bundle")


@pytest.fixture
def two_variant_bundle(tmp_path: Path) -> Bundle:
    """The tiny bundle with a second graph listed as ``int8`` (a copy of the fp32 one)."""
    root = make_tiny_bundle(tmp_path / "two").path
    shutil.copy(root / "model.onnx", root / "model.int8.onnx")
    return write_bundle(
        root,
        name="tiny-two",
        labels=["Negative", "Positive"],
        models={"fp32": "model.onnx", "int8": "model.int8.onnx"},
        max_length=64,
    )


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """../shared/data; tests needing it skip where it is absent (a fresh clone)."""
    if not (DATA_DIR / "chnsenticorp" / "test.csv.gz").is_file():
        pytest.skip(f"shared data not found at {DATA_DIR} (set QINGGAN_DATA to its path)")
    return DATA_DIR
