"""File scoring: every format in and out, stdin/stdout, bad rows, order, checkpoints and resume."""

from __future__ import annotations

import csv
import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from qinggan.bundle import Bundle
from qinggan.cli import app
from qinggan.engine import Classifier, load
from qinggan.errors import QingganError
from qinggan.files import (
    FORMATS,
    FileFormatError,
    LocalScorer,
    ResumeError,
    ScoreOptions,
    checkpoint_path,
    partial_path,
    parts_path,
    score_file,
)

ADDED = [
    "label",
    "label_zh",
    "confidence",
    "score_Negative",
    "score_Positive",
    "truncated",
    "error",
]
TEXTS = ["这家酒店很好，服务棒", "太差了，非常失望", "味道一般", "喜欢，满意", "垃圾，糟糕"]
EXPECTED = ["Positive", "Negative", None, "Positive", "Negative"]  # None: no sentiment chars


@pytest.fixture(scope="module")
def clf(tiny_bundle: Bundle) -> Classifier:
    return load(tiny_bundle.path, threads=1)


@pytest.fixture()
def scorer(clf: Classifier) -> LocalScorer:
    return LocalScorer(clf)


def write_input(path: Path, rows: list[dict[str, Any]], fmt: str) -> Path:
    """Write ``rows`` (all with the same keys) in ``fmt``."""
    if fmt in ("csv", "tsv"):
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, list(rows[0]), delimiter="," if fmt == "csv" else "\t")
            writer.writeheader()
            writer.writerows(rows)
    elif fmt == "jsonl":
        path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    elif fmt == "parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    elif fmt == "txt":
        path.write_text("".join(r["text"] + "\n" for r in rows), encoding="utf-8")
    return path


def read_output(path: Path) -> list[dict[str, Any]]:
    """Rows of an output file as dicts with CSV strings turned back into values."""
    name = path.name
    if name.endswith(".jsonl") or name == "-":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    if name.endswith(".parquet"):
        return pq.read_table(path).to_pylist()
    with open(path, newline="", encoding="utf-8") as fh:
        delimiter = "," if name.endswith(".csv") else "\t"
        rows = list(csv.DictReader(fh, delimiter=delimiter))
    for row in rows:  # the CSV writer spells nulls as empty fields and booleans in lower case
        for key, value in row.items():
            if value == "" and key in ADDED:
                row[key] = None
            elif key == "truncated":
                row[key] = value == "true"
            elif key.startswith("score_") or key == "confidence":
                row[key] = float(value)
    return rows


def rows_of(texts: list[str]) -> list[dict[str, Any]]:
    return [{"id": str(i), "text": t} for i, t in enumerate(texts)]


def check_predictions(rows: list[dict[str, Any]], texts: list[str]) -> None:
    assert [r["text"] for r in rows] == texts
    for row, text in zip(rows, texts, strict=True):
        assert set(ADDED) <= set(row)
        assert row["error"] is None
        assert row["truncated"] is False
        assert row["score_Negative"] + row["score_Positive"] == pytest.approx(1, abs=1e-5)
        expected = EXPECTED[TEXTS.index(text)]
        if expected:
            assert row["label"] == expected
            assert row["label_zh"] == {"Positive": "正面", "Negative": "负面"}[expected]


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_input_format(tmp_path: Path, scorer: LocalScorer, fmt: str) -> None:
    src = write_input(tmp_path / f"in.{fmt}", rows_of(TEXTS), fmt)
    out = tmp_path / "out.jsonl"
    summary = score_file(str(src), str(out), scorer, ScoreOptions(chunk_size=2, progress=False))
    rows = read_output(out)
    check_predictions(rows, TEXTS)
    assert (summary.rows, summary.errors) == (5, 0)
    if fmt != "txt":
        assert [r["id"] for r in rows] == ["0", "1", "2", "3", "4"]  # input columns kept


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_output_format(tmp_path: Path, scorer: LocalScorer, fmt: str) -> None:
    src = write_input(tmp_path / "in.csv", rows_of(TEXTS), "csv")
    out = tmp_path / f"out.{fmt}"
    score_file(str(src), str(out), scorer, ScoreOptions(chunk_size=3, progress=False))
    if fmt == "txt":  # plain-text output is written as TSV
        out = out.rename(tmp_path / "out.tsv")
    rows = read_output(out)
    check_predictions(rows, TEXTS)
    assert list(rows[0]) == ["id", "text", *ADDED]
    assert not partial_path(out).exists() and not checkpoint_path(out).exists()


def test_gzip_input_and_quoted_multiline_csv(tmp_path: Path, scorer: LocalScorer) -> None:
    texts = ['引号 "好" 与逗号, 还有\n换行', *TEXTS]
    src = tmp_path / "in.csv.gz"
    with gzip.open(src, "wt", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "stars"])
        writer.writerows([t, 5] for t in texts)
    out = tmp_path / "out.csv"
    score_file(str(src), str(out), scorer, ScoreOptions(progress=False))
    rows = read_output(out)
    assert [r["text"] for r in rows] == texts
    assert rows[0]["label"] == "Positive" and rows[0]["stars"] == "5"


def test_parquet_keeps_input_types(tmp_path: Path, scorer: LocalScorer) -> None:
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"n": [1, 2], "text": ["好", None]}), src)
    out = tmp_path / "out.parquet"
    score_file(str(src), str(out), scorer, ScoreOptions(progress=False))
    table = pq.read_table(out)
    assert table.schema.field("n").type == pa.int64()
    assert table.schema.field("confidence").type == pa.float64()
    assert table.column("error").to_pylist() == [None, "missing text"]


def test_bad_rows_get_an_error_and_do_not_stop_the_run(tmp_path: Path, scorer: LocalScorer) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text(
        '{"text": "很好"}\n'
        '{"text": ""}\n'
        '{"text": "   "}\n'
        '{"other": 1}\n'
        '{"text": null}\n'
        '{"text": 42}\n'
        '{"text": ["差"]}\n'
        "not json\n"
        "[1, 2]\n"
        "\n"
        '{"text": "太差"}\n',
        encoding="utf-8",
    )
    out = tmp_path / "out.jsonl"
    summary = score_file(str(src), str(out), scorer, ScoreOptions(chunk_size=4, progress=False))
    rows = read_output(out)
    errors = [r["error"] for r in rows]
    assert errors[0] is None and errors[-1] is None
    assert errors[1:3] == ["empty text", "empty text"]
    assert errors[3:5] == ["missing text", "missing text"]
    assert errors[5] == "text is not a string (got int)"
    assert errors[6] == "text is not a string (got list)"
    assert "not valid JSON" in errors[7] and "not a JSON object" in errors[8]
    assert len(rows) == 10  # the blank line is not a row
    assert rows[5]["text"] == 42  # JSON values are passed through as they were
    assert all(r["label"] is None and r["confidence"] is None for r in rows[1:9])
    assert (summary.rows, summary.errors) == (10, 8)


def test_bad_rows_in_csv_and_columnar_output(tmp_path: Path, scorer: LocalScorer) -> None:
    src = tmp_path / "in.csv"
    src.write_text("id,text\n1,好\n2,\n3\n4,差\n", encoding="utf-8")
    with pytest.raises(FileFormatError, match="CSV"):  # a short row is a broken file, not a row
        score_file(str(src), str(tmp_path / "bad.csv"), scorer, ScoreOptions(progress=False))
    src.write_text('id,text\n1,好\n2,\n3,""\n4,差\n', encoding="utf-8")
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text('{"text": 5, "meta": {"a": 1}}\n{"text": "好"}\n', encoding="utf-8")
    out = tmp_path / "out.parquet"
    score_file(str(src), str(out), scorer, ScoreOptions(progress=False))
    assert pq.read_table(out).column("error").to_pylist() == [
        None,
        "empty text",
        "empty text",
        None,
    ]
    score_file(str(jsonl), str(out), scorer, ScoreOptions(progress=False))
    table = pq.read_table(out)  # non-string JSON values become JSON text in columnar output
    assert table.column("text").to_pylist() == ["5", "好"]
    assert table.column("meta").to_pylist() == ['{"a":1}', None]


def test_order_is_preserved_across_chunks(tmp_path: Path, scorer: LocalScorer) -> None:
    texts = [TEXTS[(i * 7) % 5] + "。" * (i % 13) for i in range(500)]
    src = write_input(tmp_path / "in.csv", rows_of(texts), "csv")
    out = tmp_path / "out.jsonl"
    score_file(str(src), str(out), scorer, ScoreOptions(chunk_size=37, progress=False))
    rows = read_output(out)
    assert [r["id"] for r in rows] == [str(i) for i in range(500)]
    assert [r["text"] for r in rows] == texts


def test_empty_input_gives_header_only(tmp_path: Path, scorer: LocalScorer) -> None:
    src = tmp_path / "in.csv"
    src.write_text("id,text\n", encoding="utf-8")
    score_file(str(src), str(tmp_path / "out.csv"), scorer, ScoreOptions(progress=False))
    assert (tmp_path / "out.csv").read_text().strip() == ",".join(
        f'"{c}"' for c in ["id", "text", *ADDED]
    )
    score_file(str(src), str(tmp_path / "out.parquet"), scorer, ScoreOptions(progress=False))
    assert pq.read_table(tmp_path / "out.parquet").num_rows == 0


def test_user_errors(tmp_path: Path, scorer: LocalScorer) -> None:
    src = write_input(tmp_path / "in.csv", [{"text": "好", "label": "1"}], "csv")
    opts = ScoreOptions(progress=False)
    with pytest.raises(FileFormatError, match="--prefix"):
        score_file(str(src), str(tmp_path / "o.csv"), scorer, opts)
    score_file(
        str(src), str(tmp_path / "o.csv"), scorer, ScoreOptions(prefix="pred_", progress=False)
    )
    assert read_output(tmp_path / "o.csv")[0]["pred_label"] == "Positive"
    with pytest.raises(FileFormatError, match="no column 'review'"):
        score_file(str(src), str(tmp_path / "o.csv"), scorer, ScoreOptions(text_column="review"))
    with pytest.raises(FileFormatError, match="extension"):
        score_file(str(src), str(tmp_path / "o.xlsx"), scorer, opts)
    with pytest.raises(FileFormatError, match="does not exist"):
        score_file(str(tmp_path / "missing.csv"), str(tmp_path / "o.csv"), scorer, opts)


def test_checkpoint_seconds_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QINGGAN_CHECKPOINT_SECONDS", raising=False)
    assert ScoreOptions().checkpoint_seconds == 1.0
    monkeypatch.setenv("QINGGAN_CHECKPOINT_SECONDS", "0")
    assert ScoreOptions().checkpoint_seconds == 0.0
    assert ScoreOptions(checkpoint_seconds=5).checkpoint_seconds == 5  # explicit wins
    monkeypatch.setenv("QINGGAN_CHECKPOINT_SECONDS", "soon")
    with pytest.raises(QingganError, match=r"QINGGAN_CHECKPOINT_SECONDS must be a number"):
        ScoreOptions()


def test_too_long_texts_are_errors_with_fail_long(tmp_path: Path, tiny_bundle: Bundle) -> None:
    clf = load(tiny_bundle.path, threads=1, long_texts="truncate")
    src = write_input(tmp_path / "in.txt", [{"text": "好" * 500}, {"text": "差"}], "txt")
    out = tmp_path / "out.jsonl"
    score_file(str(src), str(out), LocalScorer(clf), ScoreOptions(fail_long=True, progress=False))
    long, short = read_output(out)
    assert "longer than the model's limit" in long["error"] and long["truncated"] is True
    assert long["label"] is None and short["label"] == "Negative"


# --------------------------------------------------------------------------- resume


class Interrupt(Exception):
    pass


def interrupt_after(rows: int):  # type: ignore[no-untyped-def]
    def callback(summary: Any) -> None:
        if summary.rows >= rows:
            raise Interrupt

    return callback


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl"])
def test_interrupted_run_resumes_to_identical_output(
    tmp_path: Path, scorer: LocalScorer, fmt: str
) -> None:
    texts = [TEXTS[i % 5] + str(i) for i in range(300)]
    src = write_input(tmp_path / "in.csv", rows_of(texts), "csv")
    reference = tmp_path / f"ref.{fmt}"
    options = ScoreOptions(chunk_size=16, progress=False, checkpoint_seconds=0)
    score_file(str(src), str(reference), scorer, options)

    out = tmp_path / f"out.{fmt}"
    with pytest.raises(Interrupt):
        score_file(str(src), str(out), scorer, options, on_progress=interrupt_after(100))
    assert not out.exists()  # nothing at the final path until the run completes
    saved = json.loads(checkpoint_path(out).read_text())
    assert saved["rows"] == 112
    if fmt == "parquet":
        assert len(list(parts_path(out).iterdir())) == 7
    else:
        with open(partial_path(out), "ab") as fh:  # a half-written chunk after the checkpoint
            fh.write(b'"garbage", "row"\n')

    summary = score_file(str(src), str(out), scorer, options)
    assert summary.resumed_from == 112 and summary.rows == 300
    assert read_output(out) == read_output(reference)
    assert not checkpoint_path(out).exists() and not partial_path(out).exists()
    assert not parts_path(out).exists()


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_run_killed_after_the_rename_counts_as_complete(
    tmp_path: Path, scorer: LocalScorer, fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kill between renaming OUT into place and removing the checkpoint loses nothing."""
    src = write_input(tmp_path / "in.csv", rows_of([TEXTS[i % 5] for i in range(50)]), "csv")
    out = tmp_path / f"out.{fmt}"
    options = ScoreOptions(chunk_size=16, progress=False, checkpoint_seconds=0)
    unlink = Path.unlink

    def killed_at_checkpoint_removal(path: Path, missing_ok: bool = False) -> None:
        if path == checkpoint_path(out) and path.is_file():
            if json.loads(path.read_text())["finished"]:
                raise Interrupt
        unlink(path, missing_ok=missing_ok)

    with monkeypatch.context() as patch:
        patch.setattr(Path, "unlink", killed_at_checkpoint_removal)
        with pytest.raises(Interrupt):
            score_file(str(src), str(out), scorer, options)
    assert out.is_file() and checkpoint_path(out).is_file()
    complete = read_output(out)

    again = score_file(str(src), str(out), scorer, options)  # the same command: nothing to do
    assert (again.rows, again.resumed_from) == (50, 50)
    assert read_output(out) == complete and len(complete) == 50
    assert not checkpoint_path(out).exists() and not partial_path(out).exists()

    with monkeypatch.context() as patch:  # a leftover never blocks a different run
        patch.setattr(Path, "unlink", killed_at_checkpoint_removal)
        with pytest.raises(Interrupt):
            score_file(str(src), str(out), scorer, options)
    changed = ScoreOptions(chunk_size=16, progress=False, prefix="p_")
    assert score_file(str(src), str(out), scorer, changed).resumed_from == 0
    assert "p_label" in read_output(out)[0] and not checkpoint_path(out).exists()


def test_resume_refuses_a_changed_input_or_options(tmp_path: Path, scorer: LocalScorer) -> None:
    src = write_input(tmp_path / "in.csv", rows_of(TEXTS * 20), "csv")
    out = tmp_path / "out.csv"
    options = ScoreOptions(chunk_size=10, progress=False, checkpoint_seconds=0)
    with pytest.raises(Interrupt):
        score_file(str(src), str(out), scorer, options, on_progress=interrupt_after(30))
    changed = ScoreOptions(chunk_size=10, progress=False, prefix="p_")
    with pytest.raises(ResumeError, match="options changed: prefix"):
        score_file(str(src), str(out), scorer, changed)
    with open(src, "a", encoding="utf-8") as fh:
        fh.write("999,新的一行\n")
    with pytest.raises(ResumeError, match="input file has changed"):
        score_file(str(src), str(out), scorer, options)
    # --no-resume starts over; --resume with nothing to resume is an error
    fresh = ScoreOptions(chunk_size=10, progress=False, resume=False)
    assert score_file(str(src), str(out), scorer, fresh).rows == 101
    with pytest.raises(ResumeError, match="nothing to resume"):
        score_file(str(src), str(out), scorer, ScoreOptions(resume=True, progress=False))


def test_resume_refuses_another_long_text_mode(tmp_path: Path, tiny_bundle: Bundle) -> None:
    """Rows cut and rows read in windows must not end up in one output."""
    src = write_input(tmp_path / "in.csv", rows_of(TEXTS * 20), "csv")
    out = tmp_path / "out.csv"
    options = ScoreOptions(chunk_size=10, progress=False, checkpoint_seconds=0)
    windowed = LocalScorer(load(tiny_bundle.path, threads=1, long_texts="window"))
    with pytest.raises(Interrupt):
        score_file(str(src), str(out), windowed, options, on_progress=interrupt_after(30))
    cut = LocalScorer(load(tiny_bundle.path, threads=1, long_texts="truncate"))
    with pytest.raises(ResumeError, match="long_texts"):
        score_file(str(src), str(out), cut, options)


def test_killed_cli_run_resumes(tmp_path: Path, tiny_bundle: Bundle) -> None:
    """SIGKILL the real CLI mid-file, rerun with --resume: identical to an uninterrupted run."""
    texts = [TEXTS[i % 5] + "。" * (i % 9) for i in range(4000)]
    src = write_input(tmp_path / "in.tsv", rows_of(texts), "tsv")
    out, reference = tmp_path / "out.csv", tmp_path / "ref.csv"
    env = {**os.environ, "QINGGAN_CHECKPOINT_SECONDS": "0"}  # a checkpoint after every chunk

    def command(target: Path, *extra: str) -> list[str]:
        return [
            sys.executable, "-m", "qinggan.cli", "predict", "-m", str(tiny_bundle.path),
            "--threads", "1", "-i", str(src), "-o", str(target), "--chunk-size", "8", "-q", *extra,
        ]  # fmt: skip

    proc = subprocess.Popen(command(out), env=env, stderr=subprocess.PIPE)
    sidecar = checkpoint_path(out)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if sidecar.exists() and json.loads(sidecar.read_text() or "{}").get("rows", 0) >= 80:
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not out.exists() and partial_path(out).exists()
    done = json.loads(sidecar.read_text())["rows"]
    assert 0 < done < len(texts)

    subprocess.run(command(out, "--resume"), check=True, capture_output=True)
    subprocess.run(command(reference), check=True, capture_output=True)
    assert out.read_bytes() == reference.read_bytes()
    assert not sidecar.exists() and not partial_path(out).exists()


# --------------------------------------------------------------------------- CLI


def test_cli_stdin_to_stdout(tiny_bundle: Bundle) -> None:
    runner = CliRunner()
    model = ["-m", str(tiny_bundle.path), "--threads", "1"]
    result = runner.invoke(app, ["predict", *model, "-i", "-", "-q"], input="很好\n\n太差\n")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["label"] for r in rows] == ["Positive", None, "Negative"]
    assert rows[1]["error"] == "empty text"
    jsonl = '{"text": "很好", "id": 7}\n{"text": 3}\n'
    result = runner.invoke(app, ["predict", *model, "-o", "-", "-q"], input=jsonl)
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert rows[0]["id"] == 7 and rows[0]["label"] == "Positive"
    assert rows[1]["error"] == "text is not a string (got int)"


def test_cli_file_summary_and_errors(tmp_path: Path, tiny_bundle: Bundle) -> None:
    src = write_input(tmp_path / "in.jsonl", rows_of(TEXTS), "jsonl")
    out = tmp_path / "out.parquet"
    base = [sys.executable, "-m", "qinggan.cli", "predict", "-m", str(tiny_bundle.path)]
    done = subprocess.run([*base, "-i", str(src), "-o", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "5 rows, 0 errors" in done.stderr and "rows/s" in done.stderr
    assert "\x1b[" not in done.stderr  # no progress bar when stderr is not a terminal
    assert pq.read_table(out).num_rows == 5
    bad = subprocess.run(
        [*base, "-i", str(src), "-o", str(tmp_path / "o.doc")], capture_output=True, text=True
    )
    assert bad.returncode == 1 and bad.stderr.startswith("error: cannot tell the format")
    assert "Traceback" not in bad.stderr


def test_cli_stdin_jsonl_to_a_columnar_file(tmp_path: Path, tiny_bundle: Bundle) -> None:
    runner = CliRunner()
    model = ["-m", str(tiny_bundle.path), "--threads", "1", "-q", "--chunk-size", "2"]
    out = tmp_path / "out.csv"
    rows = '{"text": "很好", "id": 1}\n{"id": 2, "text": "太差"}\n{"text": "好"}\n'
    result = runner.invoke(app, ["predict", *model, "-o", str(out)], input=rows)
    assert result.exit_code == 0, result.output
    scored = read_output(out)
    assert [(r["text"], r["id"], r["label"]) for r in scored] == [
        ("很好", "1", "Positive"),
        ("太差", "2", "Negative"),
        ("好", "", "Positive"),
    ]
    late_field = '{"text": "好"}\n{"text": "好"}\n{"text": "差", "extra": 1}\n'
    result = runner.invoke(app, ["predict", *model, "-o", str(out)], input=late_field)
    assert result.exit_code != 0 and "extra" in str(result.exception)
