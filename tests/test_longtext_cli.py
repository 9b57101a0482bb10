"""``--long-texts`` on the command line: predict, file scoring and eval."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qinggan.bundle import Bundle

OPENING = "酒店位置很好，服务很好。" * 8
LATE_VERDICT = OPENING + "差差差差差差，失望失望失望！" * 3  # > the tiny model's 64 tokens


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k != "QINGGAN_LONG_TEXTS"}
    return subprocess.run(
        [sys.executable, "-m", "qinggan.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**clean, **(env or {})},
    )


def test_predict_reads_long_texts_whole_unless_told_to_cut(tiny_bundle: Bundle) -> None:
    whole = run_cli("predict", "--json", "-m", str(tiny_bundle.path), LATE_VERDICT)
    cut = run_cli(
        "predict", "--json", "--long-texts", "truncate", "-m", str(tiny_bundle.path), LATE_VERDICT
    )
    assert whole.returncode == 0 and cut.returncode == 0, whole.stderr + cut.stderr
    read, trimmed = json.loads(whole.stdout), json.loads(cut.stdout)
    assert read["windows"] > 1 and read["truncated"] is False and read["label"] == "Negative"
    assert "windows" not in trimmed and trimmed["truncated"] is True
    assert trimmed["label"] == "Positive"


def test_the_environment_variable_and_the_flag(tiny_bundle: Bundle) -> None:
    env = {"QINGGAN_LONG_TEXTS": "truncate"}
    by_env = run_cli("predict", "--json", "-m", str(tiny_bundle.path), LATE_VERDICT, env=env)
    flag_wins = run_cli(
        "predict", "--json", "--long-texts", "window", "-m", str(tiny_bundle.path), LATE_VERDICT,
        env=env,
    )  # fmt: skip
    assert json.loads(by_env.stdout)["truncated"] is True
    assert json.loads(flag_wins.stdout)["windows"] > 1


def test_bad_values_are_user_errors(tiny_bundle: Bundle) -> None:
    flag = run_cli("predict", "--long-texts", "chunks", "-m", str(tiny_bundle.path), "好")
    assert flag.returncode == 2 and "--long-texts" in flag.stderr
    env = run_cli("predict", "-m", str(tiny_bundle.path), "好", env={"QINGGAN_LONG_TEXTS": "x"})
    assert env.returncode == 1 and env.stderr.startswith("error: ")
    assert "QINGGAN_LONG_TEXTS" in env.stderr and len(env.stderr.strip().splitlines()) == 1


def test_file_scoring(tiny_bundle: Bundle, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    rows = [{"text": LATE_VERDICT}, {"text": "很好"}]
    source.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n")
    outputs = {}
    for mode in ("window", "truncate"):
        out = tmp_path / f"{mode}.jsonl"
        res = run_cli(
            "predict", "-i", str(source), "-o", str(out), "-q", "--long-texts", mode,
            "-m", str(tiny_bundle.path),
        )  # fmt: skip
        assert res.returncode == 0, res.stderr
        outputs[mode] = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["label"] for r in outputs["window"]] == ["Negative", "Positive"]
    assert [r["truncated"] for r in outputs["window"]] == [False, False]
    assert [r["label"] for r in outputs["truncate"]] == ["Positive", "Positive"]
    assert [r["truncated"] for r in outputs["truncate"]] == [True, False]


def test_eval(tiny_bundle: Bundle, tmp_path: Path) -> None:
    data = tmp_path / "long.csv"
    data.write_text(f"text,label\n{LATE_VERDICT},0\n很好,1\n", encoding="utf-8")
    accuracy = {}
    for mode in ("window", "truncate"):
        report = tmp_path / f"{mode}.json"
        res = run_cli(
            "eval", str(tiny_bundle.path), str(data), "--long-texts", mode, "-o", str(report)
        )
        assert res.returncode == 0, res.stderr
        rows = json.loads(report.read_text(encoding="utf-8"))["rows"]
        accuracy[mode] = rows["long"]["model"]["accuracy"]
    assert accuracy == {"window": 1.0, "truncate": 0.5}


@pytest.mark.slow
def test_ray_engine_takes_the_option(tiny_bundle: Bundle, tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="ray is not installed (pip install 'qinggan[ray]')")
    source = tmp_path / "in.txt"
    source.write_text(f"{LATE_VERDICT}\n很好\n", encoding="utf-8")
    rows = {}
    for mode in ("window", "truncate"):
        out = tmp_path / f"{mode}.jsonl"
        res = run_cli(
            "predict", "-i", str(source), "-o", str(out), "-q", "--engine", "ray",
            "--concurrency", "1", "--long-texts", mode, "-m", str(tiny_bundle.path),
        )  # fmt: skip
        assert res.returncode == 0, res.stderr
        rows[mode] = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["label"] for r in rows["window"]] == ["Negative", "Positive"]
    assert [r["truncated"] for r in rows["truncate"]] == [True, False]
