"""``--explain`` on the command line and in file scoring."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

from qinggan.bundle import Bundle
from qinggan.engine import load
from qinggan.explain.output import rich_text
from qinggan.files import LocalScorer, ScoreOptions, score_file

MIXED = "服务很好，但是房间太差了"


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qinggan.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_explain_prints_spans_as_json_in_a_pipe(tiny_bundle: Bundle) -> None:
    res = run_cli("predict", "--explain", "-m", str(tiny_bundle.path), MIXED)
    assert res.returncode == 0, res.stderr
    row = json.loads(res.stdout)
    assert row["text"] == MIXED and row["label"] in ("Positive", "Negative")
    explanation = row["explanation"]
    assert explanation["method"] == "clause-alone"
    clauses = [s for s in explanation["spans"] if s["level"] == "clause"]
    assert [s["text"] for s in clauses] == ["服务很好", "房间太差了"]
    assert clauses[0]["score"] > 0 > clauses[1]["score"]


def test_explain_on_stdin_lines_and_blank_lines(tiny_bundle: Bundle) -> None:
    res = run_cli("predict", "--explain", "-m", str(tiny_bundle.path), stdin=f"{MIXED}\n\n很好\n")
    assert res.returncode == 0, res.stderr
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert "explanation" in rows[0] and rows[1]["error"] == "empty text"
    assert rows[2]["explanation"]["spans"][0]["text"] == "很好"


def test_without_explain_json_has_no_explanation(tiny_bundle: Bundle) -> None:
    res = run_cli("predict", "--json", "-m", str(tiny_bundle.path), MIXED)
    assert "explanation" not in json.loads(res.stdout)


def test_terminal_text_colours_each_side(tiny_bundle: Bundle) -> None:
    clf = load(tiny_bundle.path)
    explanation = clf.predict([MIXED], explain=True)[0].explanation
    assert explanation is not None
    text = rich_text(MIXED, explanation)
    assert text.plain == MIXED
    colours = {str(span.style.color.get_truecolor()) for span in text.spans if span.style.color}
    greens = [s for s in text.spans if s.style.color and s.style.color.triplet.green > 200]
    reds = [s for s in text.spans if s.style.color and s.style.color.triplet.red > 200]
    assert len(colours) >= 2 and greens and reds
    assert MIXED[greens[0].start : greens[0].end] == "服务很好"


def test_file_scoring_adds_the_explanation_columns(tmp_path: Path, tiny_bundle: Bundle) -> None:
    src = tmp_path / "in.csv"
    with src.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "text"])
        writer.writerows([[1, MIXED], [2, ""], [3, "很好"], [4, "太差了"]])
    out = tmp_path / "out.csv"
    options = ScoreOptions(progress=False)
    score_file(str(src), str(out), LocalScorer(load(tiny_bundle.path), explain=True), options)
    with out.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0])[-3:] == ["phrase_positive", "phrase_negative", "mixed"]
    assert "好" in rows[0]["phrase_positive"] and "差" in rows[0]["phrase_negative"]
    assert rows[1]["error"] and rows[1]["mixed"] == ""
    assert rows[2]["phrase_negative"] == "" and rows[2]["mixed"] == "false"


def test_cli_file_scoring_with_explain(tmp_path: Path, tiny_bundle: Bundle) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"text": MIXED}, ensure_ascii=False) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    args = ["predict", "-m", str(tiny_bundle.path), "-i", str(src), "-o", str(out), "-q"]
    res = run_cli(*args, "--explain", "--prefix", "p_")
    assert res.returncode == 0, res.stderr
    row = json.loads(out.read_text(encoding="utf-8"))
    assert row["p_mixed"] is True and "差" in row["p_phrase_negative"]
    res = run_cli(*args, "--explain", "--engine", "ray")
    assert res.returncode == 1 and res.stderr.startswith("error: --explain")
