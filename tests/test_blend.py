"""Blending bundles into an ensemble: the weight grid, the dev choice, the written bundle."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np
import pytest

import qinggan
from qinggan.ensemble import mix, sharpen
from qinggan.errors import QingganError
from qinggan.testing import make_tiny_bundle
from qinggan.train.blend import blend, choose_blend, choose_gate, weight_grid


def test_weight_grid_covers_the_simplex() -> None:
    assert weight_grid(2, 0.5) == [(0.0, 1.0), (0.5, 0.5), (1.0, 0.0)]
    grid = weight_grid(3, 0.25)
    assert len(grid) == 15  # C(4 + 2, 2)
    assert all(sum(w) == pytest.approx(1.0) and min(w) >= 0 for w in grid)
    with pytest.raises(QingganError):
        weight_grid(2, 0)


def test_choose_blend_finds_the_complementary_mix() -> None:
    # a: confidently right on the first half, barely wrong on the second; b: the mirror
    labels = np.array([1] * 50 + [0] * 50)
    a = np.array([[0.1, 0.9]] * 50 + [[0.4, 0.6]] * 50)  # [P(Negative), P(Positive)]
    b = np.array([[0.6, 0.4]] * 50 + [[0.9, 0.1]] * 50)
    chosen = choose_blend([a, b], labels, step=0.1)
    assert chosen.dev_accuracy == 1.0
    assert 0 < chosen.weights[0] < 1  # neither member alone is perfect
    assert len(chosen.sweep) == 11 and chosen.temperature > 0
    single = [row["accuracy"] for row in chosen.sweep if 1.0 in row["weights"]]
    assert max(single) < 1.0


def _write_dev(root: Path) -> None:
    rows = [("真好，很棒", 1), ("太差了", 0), ("喜欢", 1), ("失望，烂", 0), ("好", 1), ("差", 0)]
    for source in ("alpha", "beta"):
        (root / source).mkdir(parents=True)
        with gzip.open(root / source / "dev.csv.gz", "wt", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["text", "label"])
            writer.writerows(rows)


def test_blend_writes_a_loadable_ensemble(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _write_dev(data)
    a = make_tiny_bundle(tmp_path / "models" / "a")
    b = make_tiny_bundle(tmp_path / "models" / "b", max_length=32, seed=1)
    out = tmp_path / "models" / "blend"
    chosen = blend(out, data, [a.path, b.path], name="tiny-blend", step=0.25, threads=1)
    manifest = qinggan.load_bundle(out).manifest
    kept = [(p, w) for p, w in zip(("../a", "../b"), chosen.weights, strict=True) if w > 0]
    assert [(m["path"], m["weight"]) for m in manifest.members] == kept  # weight 0: left out
    assert manifest.temperature == chosen.temperature
    assert manifest.max_length == 32  # the shortest member's: what every member reads whole
    assert manifest.training["blend"]["dev_texts"] == 12
    ens = qinggan.load(out, threads=1)
    texts = ["真好", "太差了"]
    members = [qinggan.load(out / path, threads=1) for path, _ in kept]
    probs = [np.array([[p.scores["Negative"], p.scores["Positive"]] for p in m.predict(texts)])
             for m in members]  # fmt: skip
    expected = sharpen(mix(probs, np.array([w for _, w in kept])), chosen.temperature)
    got = np.array([[p.scores["Negative"], p.scores["Positive"]] for p in ens.predict(texts)])
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert [p.label for p in ens.predict(texts)] == ["Positive", "Negative"]


def test_choose_gate_lets_the_gate_member_answer_only_where_accuracy_holds() -> None:
    # member 1 is right when it is >= 0.9 sure and wrong at 0.7; member 0 is always right
    labels = np.array([1] * 60 + [0] * 40)
    sure_right = [[0.05, 0.95]] * 60
    unsure_wrong = [[0.3, 0.7]] * 40
    gate_member = np.array(sure_right + unsure_wrong)
    other = np.array([[0.2, 0.8]] * 60 + [[0.99, 0.01]] * 40)
    chosen = choose_blend([other, gate_member], labels, step=0.1)
    assert chosen.dev_accuracy == 1.0
    gate = choose_gate([other, gate_member], labels, chosen, member=1)
    assert 0.7 < gate["confidence"] <= 0.95  # above the wrong answers' confidence
    assert gate["answered_alone_on_dev"] == 0.6 and gate["dev_accuracy"] == 1.0
    loose = choose_gate([other, gate_member], labels, chosen, member=1, max_drop=0.5)
    assert loose["confidence"] == 0.5 and loose["answered_alone_on_dev"] == 1.0


def test_choose_gate_with_a_speed_budget_passes_on_at_most_that_share() -> None:
    # the gate member is wrong on 30 texts it is 0.6-0.8 sure of; the other is always right
    labels = np.ones(100, dtype=int)
    gate_member = np.array([[0.05, 0.95]] * 70 + [[0.6, 0.4]] * 10 + [[0.7, 0.3]] * 20)
    other = np.array([[0.01, 0.99]] * 100)
    chosen = choose_blend([other, gate_member], labels, step=0.1)
    roomy = choose_gate([other, gate_member], labels, chosen, member=1, max_share=0.5)
    assert roomy["confidence"] == 0.71 and roomy["dev_accuracy"] == 1.0  # all 30 passed on
    tight = choose_gate([other, gate_member], labels, chosen, member=1, max_share=0.2)
    assert tight["answered_alone_on_dev"] == 0.9 and tight["dev_accuracy"] == 0.8
    assert tight["confidence"] == 0.61  # the lowest threshold passing on the 10 at 0.6
    alone = choose_gate([other, gate_member], labels, chosen, member=1, max_share=0.0)
    assert alone["confidence"] == 0.5 and alone["dev_accuracy"] == 0.7  # nothing passed on


def test_choose_gate_holds_accuracy_in_every_group() -> None:
    labels = np.ones(100, dtype=int)
    gate_member = np.array([[0.05, 0.95]] * 90 + [[0.8, 0.2]] * 10)  # sure-ish and wrong on 10
    other = np.array([[0.01, 0.99]] * 100)
    groups = np.array(["big"] * 90 + ["small"] * 10)
    chosen = choose_blend([other, gate_member], labels, step=0.1)
    overall_only = choose_gate([other, gate_member], labels, chosen, member=1, max_drop=0.1)
    assert overall_only["confidence"] == 0.5  # losing 10 % overall is within 0.1
    per_group = choose_gate(
        [other, gate_member], labels, chosen, member=1, max_drop=0.1, groups=groups
    )
    assert per_group["confidence"] > 0.8  # the small group would lose everything
    assert per_group["dev_accuracy"] == 1.0


def test_pipeline_script_reports_a_user_error_in_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    missing = tmp_path / "no-such-bundle"
    command = ["-m", "qinggan.train.blend", str(tmp_path / "out"), str(tmp_path), str(missing)]
    done = subprocess.run([sys.executable, *command], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.startswith("error: ") and str(missing) in done.stderr
    assert "Traceback" not in done.stderr
