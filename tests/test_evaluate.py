"""``qinggan eval``: metrics, input expansion, reports, and one-line errors."""

from __future__ import annotations

import csv
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from qinggan.bundle import Bundle
from qinggan.errors import QingganError
from qinggan.evaluate import compute_metrics, expand_inputs, macro_f1, reliability_bins
from qinggan.train.data import read_labelled

ROWS = [
    ("这家酒店很好，很满意", 1),
    ("太差了，非常失望", 0),
    ("服务很棒，推荐", 1),
    ("东西烂，糟糕透了", 0),
    ("好", 0),  # the tiny model gets this one wrong
]


def write_csv(path: Path, rows=ROWS) -> Path:  # type: ignore[no-untyped-def]
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qinggan.cli", *args],
        capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip


def test_metrics_by_hand() -> None:
    labels = np.array([1, 1, 0, 0])
    probs = np.array([0.9, 0.4, 0.2, 0.6])
    m = compute_metrics(labels, probs)
    assert m.n == 4 and m.accuracy == 0.5
    assert m.confusion == [[1, 1], [1, 1]]
    assert m.macro_f1 == pytest.approx(0.5)
    assert m.ece is not None and 0.0 < m.ece < 1.0


def test_macro_f1_all_one_class() -> None:
    assert macro_f1(np.array([1, 1, 0]), np.array([1, 1, 1])) == pytest.approx((0.8 + 0.0) / 2)


def test_ece_zero_when_confidence_matches_accuracy() -> None:
    # 10 predictions at confidence 0.8, 8 of them right -> perfectly calibrated
    labels = np.array([1] * 8 + [0] * 2)
    probs = np.full(10, 0.8)
    ece, bins = reliability_bins(labels, probs)
    assert ece == pytest.approx(0.0, abs=1e-9)
    assert sum(b["count"] for b in bins) == 10


def test_ece_of_overconfident_model() -> None:
    labels = np.array([1, 0] * 50)
    ece, _ = reliability_bins(labels, np.full(100, 0.99))
    assert ece == pytest.approx(0.49)


def test_read_labelled_csv_gz_and_jsonl(tmp_path: Path) -> None:
    gz = write_csv(tmp_path / "a.csv.gz")
    assert [(e.text, e.label) for e in read_labelled(gz)] == ROWS
    jl = tmp_path / "b.jsonl"
    jl.write_text(
        "\n".join(json.dumps({"text": t, "label": y}, ensure_ascii=False) for t, y in ROWS)
    )
    assert [(e.text, e.label) for e in read_labelled(jl)] == ROWS


def test_bad_label_is_a_user_error(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "bad.csv", [("好", 2)])
    with pytest.raises(QingganError, match="label must be 0 or 1"):
        read_labelled(path)


def test_directory_expands_to_test_splits(tmp_path: Path) -> None:
    for source in ("hotel", "waimai"):
        (tmp_path / source).mkdir()
        write_csv(tmp_path / source / "test.csv.gz")
        write_csv(tmp_path / source / "train.csv.gz")
    assert [name for name, _ in expand_inputs([tmp_path])] == ["hotel", "waimai"]


def test_eval_cli_writes_reports(tiny_bundle: Bundle, tmp_path: Path) -> None:
    data = write_csv(tmp_path / "small.csv")
    res = run_cli(
        "eval", str(tiny_bundle.path), str(data),
        "-o", str(tmp_path / "r.json"), "--markdown", str(tmp_path / "r.md"),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "small" in res.stdout and "80.00" in res.stdout
    report = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    row = report["rows"]["small"]["model"]
    assert row["n"] == 5 and row["accuracy"] == pytest.approx(0.8)
    assert row["confusion"] == [[2, 1], [0, 2]]
    assert "| small | 5 | 80.00 |" in (tmp_path / "r.md").read_text(encoding="utf-8")


def test_eval_cli_plot(tiny_bundle: Bundle, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    res = run_cli(
        "eval",
        str(tiny_bundle.path),
        str(write_csv(tmp_path / "s.csv")),
        "--plot",
        str(tmp_path / "r.png"),
    )
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"


def test_eval_cli_snownlp_baseline(tiny_bundle: Bundle, tmp_path: Path) -> None:
    pytest.importorskip("snownlp")
    res = run_cli("eval", str(tiny_bundle.path), str(write_csv(tmp_path / "s.csv")),
                  "--baseline", "snownlp", "-o", str(tmp_path / "r.json"))  # fmt: skip
    assert res.returncode == 0, res.stderr
    report = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert report["rows"]["s"]["snownlp"]["n"] == 5


def test_eval_cli_missing_file_is_one_line_error(tiny_bundle: Bundle, tmp_path: Path) -> None:
    res = run_cli("eval", str(tiny_bundle.path), str(tmp_path / "nope.csv"))
    assert res.returncode == 1
    assert res.stderr.startswith("error: ") and "Traceback" not in res.stderr


def test_eval_does_not_import_torch() -> None:
    code = "import sys, qinggan.evaluate; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


def test_eval_cli_takes_the_model_as_an_option_and_prints_json(
    tiny_bundle: Bundle, tmp_path: Path
) -> None:
    data = str(write_csv(tmp_path / "small.csv"))
    res = run_cli("eval", "-m", str(tiny_bundle.path), data, "--json")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["rows"]["small"]["model"]["n"] == 5
    no_data = run_cli("eval", "-m", str(tiny_bundle.path))
    assert no_data.returncode == 2
