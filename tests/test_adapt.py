"""qinggan adapt, the parts: labels, checks, the split, the feature graph, N-label metrics,
and every bad input as one ``error:`` line with exit 1 and nothing written."""

from __future__ import annotations

import csv
import gzip
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from qinggan.adapt.data import AdaptDataError, LabelMap, from_pairs, read_labelled, split
from qinggan.adapt.features import find_features, load_graph
from qinggan.bundle import Bundle
from qinggan.evaluate import probs_metrics
from qinggan.testing import NEGATIVE_CHARS, NEUTRAL_CHARS, POSITIVE_CHARS

CLASS_CHARS = {0: NEGATIVE_CHARS, 1: POSITIVE_CHARS, 2: "一般还行普通"}


def labelled_rows(n: int, classes: int = 2, seed: int = 0) -> list[dict[str, object]]:
    """Generated reviews: neutral filler plus a class's characters; every text distinct."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % classes
        filler = "".join(rng.choice(NEUTRAL_CHARS) for _ in range(rng.randint(2, 6)))
        marks = "".join(rng.choice(CLASS_CHARS[label]) for _ in range(rng.randint(1, 3)))
        rows.append({"text": f"{filler}{marks}{i}", "label": label})
    return rows


def write_csv(path: Path, rows: list[dict[str, object]], encoding: str = "utf-8") -> Path:
    fields = list(rows[0]) if rows else ["text", "label"]
    with path.open("w", encoding=encoding, newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return path


def run_adapt(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qinggan.cli", "adapt", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in os.environ.items() if not k.startswith("QINGGAN_")},
    )


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["0", "1", 0, 1], ["Negative", "Positive"] * 2),
        (["Positive", "NEGATIVE", "pos", "Neg"], ["Positive", "Negative"] * 2),
        (["正面", "负面", "2", "中性", "neutral"], ["Positive", "Negative", *["Neutral"] * 3]),
    ],
)
def test_label_spellings(values: list[object], expected: list[str]) -> None:
    mapping = LabelMap()
    assert [mapping.name(v) for v in values] == expected


def test_third_label_orders_negative_neutral_positive() -> None:
    rows = [(r["text"], r["label"]) for r in labelled_rows(90, classes=3)]
    data = from_pairs(rows)
    assert data.labels == ("Negative", "Neutral", "Positive")
    assert data.counts() == {"Negative": 30, "Neutral": 30, "Positive": 30}


def test_custom_labels_by_name_or_position() -> None:
    rows = [(f"t{i}", ["bad", "OK", 2][i % 3]) for i in range(90)]
    data = from_pairs(rows, labels=["bad", "ok", "good"])
    assert data.labels == ("bad", "ok", "good")
    assert data.counts() == {"bad": 30, "ok": 30, "good": 30}


def test_texts_with_two_labels_are_dropped_and_counted() -> None:
    rows = [(r["text"], r["label"]) for r in labelled_rows(60)]
    rows += [
        ("同一句话", 0),
        ("同一句话", 1),
        ("另一句", 1),
        ("另一句", 0),
        (rows[0][0], rows[0][1]),
    ]
    data = from_pairs(rows)
    texts = [r.text for r in data.rows]
    assert data.conflicting == 2
    assert data.duplicates == 1
    assert "同一句话" not in texts and "另一句" not in texts
    assert len(data.rows) == 60


def test_split_is_stratified_and_seeded() -> None:
    data = from_pairs([(r["text"], r["label"]) for r in labelled_rows(100, classes=2)])
    train, val = split(data, 0.2, seed=3)
    assert len(val) == 20 and sum(r.label for r in val) == 10
    assert {r.text for r in train}.isdisjoint({r.text for r in val})
    assert [r.text for r in split(data, 0.2, seed=3)[1]] == [r.text for r in val]
    assert [r.text for r in split(data, 0.2, seed=4)[1]] != [r.text for r in val]


def test_reads_jsonl_gzip_with_other_column_names(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        for row in labelled_rows(40):
            fh.write(json.dumps({"review": row["text"], "sentiment": row["label"]}) + "\n")
    data = read_labelled(path)
    assert len(data.rows) == 40 and data.labels == ("Negative", "Positive")


def test_reads_parquet_and_tsv(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = labelled_rows(40)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "rows.parquet")
    assert len(read_labelled(tmp_path / "rows.parquet").rows) == 40
    tsv = tmp_path / "rows.tsv"
    tsv.write_text(
        "text\tlabel\n" + "".join(f"{r['text']}\t{r['label']}\n" for r in rows), encoding="utf-8"
    )
    assert len(read_labelled(tsv).rows) == 40


def test_unknown_label_names_the_row_and_value(tmp_path: Path) -> None:
    rows = labelled_rows(40)
    rows[6]["label"] = "maybe"
    with pytest.raises(AdaptDataError, match=r"row 7: unknown label 'maybe'"):
        read_labelled(write_csv(tmp_path / "d.csv", rows))


def test_features_found_before_the_head(tiny_bundle: Bundle) -> None:
    graph = load_graph(tiny_bundle.model_path()).graph
    assert find_features(graph) == "mean"


def test_features_of_the_builtin_transformer() -> None:
    from qinggan.bundle import BUILTIN_DIR

    path = BUILTIN_DIR / "accurate" / "transformer" / "model.int8.onnx"
    if not path.is_file():
        pytest.skip("built-in transformer not installed")
    assert find_features(load_graph(path).graph) == "/Div_output_0"  # mean pooling


def test_three_label_metrics() -> None:
    labels = [0, 1, 2, 2]
    probs = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7], [0.6, 0.3, 0.1]])
    m = probs_metrics(labels, probs)
    assert m.confusion == [[1, 0, 0], [0, 1, 0], [1, 0, 1]]
    assert m.accuracy == 0.75
    assert m.macro_f1 == pytest.approx((2 / 3 + 1 + 2 / 3) / 3)
    assert m.ece is not None and 0 <= m.ece <= 1


def _bad(tmp_path: Path, case: str) -> Path:
    rows = labelled_rows(60)
    if case == "missing text column":
        return write_csv(
            tmp_path / "d.csv", [{"body": r["text"], "label": r["label"]} for r in rows]
        )
    if case == "missing label column":
        return write_csv(tmp_path / "d.csv", [{"text": r["text"], "stars": 5} for r in rows])
    if case == "unknown label":
        rows[9]["label"] = "sorta"
    elif case == "single class":
        rows = [r for r in rows if r["label"] == 1]
    elif case == "too few of a class":
        rows = [r for r in rows if r["label"] == 1] + [r for r in rows if r["label"] == 0][:19]
    elif case == "non-utf8":
        return write_csv(tmp_path / "d.csv", rows, encoding="gb18030")
    return write_csv(tmp_path / "d.csv", rows)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing text column", "no text column"),
        ("missing label column", "no label column"),
        ("unknown label", "row 10: unknown label 'sorta'"),
        ("single class", "single class (Positive)"),
        ("too few of a class", "too few for Negative: 19"),
        ("non-utf8", "is not UTF-8"),
    ],
)
def test_bad_input_is_one_error_line(
    tmp_path: Path, tiny_bundle: Bundle, case: str, message: str
) -> None:
    data = _bad(tmp_path, case)
    out = tmp_path / "out"
    res = run_adapt(str(data), "--out", str(out), "--base", str(tiny_bundle.path))
    assert res.returncode == 1, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["d.csv"]  # nothing else written


def test_existing_out_needs_overwrite(tmp_path: Path, tiny_bundle: Bundle) -> None:
    data = write_csv(tmp_path / "d.csv", labelled_rows(60))
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine", encoding="utf-8")
    res = run_adapt(str(data), "--out", str(out), "--base", str(tiny_bundle.path))
    assert res.returncode == 1
    assert res.stderr.strip() == f"error: {out} already exists; pass --overwrite to replace it"
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


@pytest.mark.parametrize("args", [("--val-fraction", "0"), ("--minutes", "0"), ()])
def test_bad_option_is_a_usage_error(tmp_path: Path, args: tuple[str, ...]) -> None:
    out = ("--out", str(tmp_path / "o")) if args else ()  # () leaves out the required --out
    res = run_adapt(str(tmp_path / "d.csv"), *out, *args)
    assert res.returncode == 2, res.stderr
    assert not (tmp_path / "o").exists()


def test_adapt_flags_are_the_options_fields() -> None:
    """adapt's flags, help texts and defaults come from AdaptOptions, typed nowhere else."""
    import dataclasses

    import typer

    from qinggan.adapt.config import AdaptOptions
    from qinggan.cli import app
    from qinggan.options import default_of, flag_of, help_of

    command = typer.main.get_command(app).commands["adapt"]  # type: ignore[attr-defined]
    params = {p.name: p for p in command.params if p.param_type_name == "option"}
    assert set(params) - {"help"} == {f.name for f in dataclasses.fields(AdaptOptions)} - {"data"}
    for name, param in params.items():
        if name == "help":
            continue
        assert flag_of(AdaptOptions, name) in param.opts, name
        assert param.help == help_of(AdaptOptions, name), name
        expected = default_of(AdaptOptions, name)
        assert param.default == (None if expected is dataclasses.MISSING else expected), name
