"""The char n-gram model: its ONNX graph matches scikit-learn and serves through the engine."""

from __future__ import annotations

import csv
import gzip
import random
from pathlib import Path

import pytest

pytest.importorskip("sklearn", reason="scikit-learn (the train extra) is not installed")

import qinggan  # noqa: E402
from qinggan.train.calibration import fit_temperature  # noqa: E402
from qinggan.train.ngram import ngrams, train  # noqa: E402

POS = ["很好", "非常满意", "推荐", "干净舒服", "服务周到", "下次还来", "物超所值"]
NEG = ["太差", "失望", "不推荐", "脏乱", "服务态度恶劣", "再也不来", "退货"]
FILLER = ["酒店", "房间", "快递", "这本书", "手机", "外卖", "，", "！", "。", " ", "价格"]


def synthetic_rows(n: int, seed: int) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.randint(0, 1)
        words = rng.sample(POS if label else NEG, 2) + rng.sample(FILLER, 3)
        rng.shuffle(words)
        rows.append(("".join(words), label))
    return rows


def write_split(root: Path, source: str, split: str, rows: list[tuple[str, int]]) -> None:
    (root / source).mkdir(parents=True, exist_ok=True)
    with gzip.open(root / source / f"{split}.csv.gz", "wt", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows(rows)


@pytest.fixture(scope="module", params=[True, False], ids=["sublinear-tf", "raw-tf"])
def ngram_bundle(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    data = tmp_path_factory.mktemp("data")
    write_split(data, "demo", "train", synthetic_rows(600, 1))
    write_split(data, "demo", "dev", synthetic_rows(200, 2))
    out = tmp_path_factory.mktemp("ngram") / "bundle"
    return train(data, out, max_features=5000, sublinear=request.param)


def test_export_matches_scikit_learn(ngram_bundle) -> None:
    parity = ngram_bundle.manifest.parity
    assert parity["texts"] == 200
    assert parity["fp32_max_abs_logit_diff"] <= 1e-4
    assert parity["label_agreement"] == 1.0


def test_serves_through_the_engine(ngram_bundle) -> None:
    clf = qinggan.load(ngram_bundle.path)
    pos, neg, empty = clf.predict(["房间干净舒服，非常满意", "太差了，失望，再也不来", "   "])
    assert pos.label == "Positive" and neg.label == "Negative"
    assert empty.label in ("Negative", "Positive")  # encodes to nothing: still an answer
    assert ngram_bundle.manifest.training["dev_accuracy"] > 0.9


def test_ngrams() -> None:
    assert ngrams([5, 6, 7]) == [(5,), (6,), (7,), (5, 6), (6, 7), (5, 6, 7)]
    assert ngrams([]) == []


def test_fit_temperature_recovers_scale() -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    z = rng.normal(0, 2, 4000)
    labels = (rng.random(4000) < 1 / (1 + np.exp(-z))).astype(int)
    logits = np.stack([np.zeros_like(z), 3.0 * z], 1)  # over-confident by 3x
    assert fit_temperature(logits, labels) == pytest.approx(3.0, rel=0.15)
