"""qinggan adapt end to end with the tiny test bundle: the command, the bundle it writes
(served, scored, evaluated, loaded without torch), a third label everywhere, and a kill
that leaves OUT absent."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from qinggan.bundle import Bundle, load_bundle, sha256_file
from serverproc import ServerProcess
from test_adapt import labelled_rows, run_adapt, write_csv


@pytest.fixture(scope="module")
def adapted(tiny_bundle: Bundle, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two adapted bundles: two labels and three (Negative, Neutral, Positive)."""
    root = tmp_path_factory.mktemp("adapt")
    out = {}
    for name, classes in (("two", 2), ("three", 3)):
        data = write_csv(root / f"{name}.csv", labelled_rows(60 * classes, classes, seed=classes))
        res = run_adapt(str(data), "--out", str(root / name), "--base", str(tiny_bundle.path))
        assert res.returncode == 0, res.stderr
        assert "chose " in res.stdout
        out[name] = root / name
        out[f"{name}-data"] = data
    return out


def test_adapted_bundle_records_its_making(adapted: dict[str, Path], tiny_bundle: Bundle) -> None:
    manifest = load_bundle(adapted["two"]).manifest
    assert manifest.source["base"]["sha256"] == tiny_bundle.sha256()
    info = manifest.training["adapt"]
    assert info["data"]["sha256"] == sha256_file(adapted["two-data"])
    assert info["data"]["rows"] == 120
    assert info["data"]["train_rows"] + info["data"]["val_rows"] == 120
    assert info["chosen"]["method"] in {"recalibrate", "ngram", "head", "head+ngram"}
    assert info["tried"], "the other candidates are recorded"
    validation = manifest.metrics["adapt"]["validation"]
    assert set(validation) == {"base", "adapted"}
    assert 0.0 <= validation["adapted"]["accuracy"] <= 1.0
    assert not list(adapted["two"].parent.glob(".two.adapt-tmp-*"))


def test_adapted_bundle_loads_and_predicts_without_torch(adapted: dict[str, Path]) -> None:
    code = (
        "import sys, qinggan\n"
        f"clf = qinggan.load({str(adapted['three'])!r})\n"
        "preds = clf.predict(['服务很好很满意', '太差了很失望', '一般还行'])\n"
        "print(','.join(p.label for p in preds))\n"
        "heavy = ('torch', 'transformers', 'sklearn', 'onnx', 'qinggan.train', 'qinggan.adapt')\n"
        "found = (m for m in sys.modules if m in heavy or m.split('.')[0] in heavy)\n"
        "print(','.join(sorted(found)))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    labels, imported = (res.stdout.splitlines() + [""])[:2]
    assert labels == "Positive,Negative,Neutral"
    assert imported == "", f"serving an adapted bundle imported {imported}"


def test_three_labels_over_http(adapted: dict[str, Path]) -> None:
    with ServerProcess(adapted["three"]) as server:
        one = httpx.post(f"{server.base_url}/analyze", json={"text": "一般还行"}).json()
        assert one["label"] == "Neutral" and one["label_zh"] == "中性"
        assert set(one["scores"]) == {"Negative", "Neutral", "Positive"}
        many = httpx.post(
            f"{server.base_url}/v1/analyze", json={"texts": ["很好很满意", "太差了"]}
        ).json()
        assert [r["label"] for r in many["results"]] == ["Positive", "Negative"]
        info = httpx.get(f"{server.base_url}/info").json()
        assert "Neutral" in json.dumps(info)


def test_three_labels_in_file_scoring_and_eval(adapted: dict[str, Path], tmp_path: Path) -> None:
    scored = tmp_path / "scored.csv"
    res = subprocess.run(
        [sys.executable, "-m", "qinggan.cli", "predict", "-m", str(adapted["three"]),
         "--input", str(adapted["three-data"]), "--output", str(scored), "--prefix", "p_"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    with scored.open(encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    assert {"p_score_Negative", "p_score_Neutral", "p_score_Positive"} <= set(rows[0])
    assert {r["p_label"] for r in rows} == {"Negative", "Neutral", "Positive"}
    report = tmp_path / "eval.json"
    res = subprocess.run(
        [sys.executable, "-m", "qinggan.cli", "eval", str(adapted["three"]),
         str(adapted["three-data"]), "--output", str(report)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    model = json.loads(report.read_text(encoding="utf-8"))["rows"]["three"]["model"]
    assert len(model["confusion"]) == 3 and all(len(row) == 3 for row in model["confusion"])
    assert sum(map(sum, model["confusion"])) == 180
    assert model["accuracy"] > 0.5 and model["macro_f1"] > 0.5


KILL_DURING_WRITE = """
import sys, time
import qinggan.adapt.write as write
real = write.write_adapted
def slow(root, *args, **kwargs):
    (root / "started").write_text("1")
    time.sleep(120)
    return real(root, *args, **kwargs)
write.write_adapted = slow
import qinggan.adapt.run as run
run.write_adapted = slow
from qinggan.cli import main
sys.argv = ["qinggan", "adapt", *sys.argv[1:]]
main()
"""


def test_kill_during_the_run_leaves_out_absent(tmp_path: Path, tiny_bundle: Bundle) -> None:
    data = write_csv(tmp_path / "d.csv", labelled_rows(120))
    out = tmp_path / "out"
    args = [str(data), "--out", str(out), "--base", str(tiny_bundle.path)]
    proc = subprocess.Popen([sys.executable, "-c", KILL_DURING_WRITE, *args])
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob(".out.adapt-tmp-*/started")):
            assert proc.poll() is None and time.monotonic() < deadline, "never got to writing"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not out.exists()
    res = run_adapt(*args)  # the next run completes and clears the killed run's leftovers
    assert res.returncode == 0, res.stderr
    assert load_bundle(out).name == "out"
    assert not list(tmp_path.glob(".out.adapt-tmp-*"))


@pytest.fixture(scope="module")
def ensemble_base(tiny_bundle: Bundle, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A base shaped like ``accurate``: an encoder member and an n-gram member, averaged."""
    import shutil

    import numpy as np

    from qinggan.adapt.ngram import export, fit_ngram
    from qinggan.bundle import write_bundle

    root = tmp_path_factory.mktemp("ensemble-base")
    shutil.copytree(tiny_bundle.path, root / "encoder")
    rows = labelled_rows(200, seed=7)
    labels = np.array([r["label"] for r in rows])
    fit = fit_ngram([str(r["text"]) for r in rows], labels, np.ones(len(rows)), 2, 4.0, 0)
    (root / "ngram").mkdir()
    export(fit, root / "ngram" / "model.onnx")
    fit.tokenizer.save(str(root / "ngram" / "tokenizer.json"))
    write_bundle(root / "ngram", name="tiny-ngram", labels=["Negative", "Positive"],
                 models={"fp32": "model.onnx"}, max_length=512, inputs=("input_ids",))  # fmt: skip
    members = [{"path": "encoder", "weight": 0.4}, {"path": "ngram", "weight": 0.6}]
    (root / "base").mkdir()
    write_bundle(root / "base", name="tiny-ensemble", labels=["Negative", "Positive"], models={},
                 max_length=64, members=[{**m, "path": f"../{m['path']}"} for m in members],
                 temperature=0.9)  # fmt: skip
    return root / "base"


def test_adapting_an_ensemble_base_tries_its_members(ensemble_base: Path, tmp_path: Path) -> None:
    data = write_csv(tmp_path / "d.csv", labelled_rows(120, seed=11))
    out = tmp_path / "out"
    res = run_adapt(str(data), "--out", str(out), "--base", str(ensemble_base))
    assert res.returncode == 0, res.stderr
    info = load_bundle(out).manifest.training["adapt"]
    tried = {c["method"]: c["members"] for c in [info["chosen"], *info["tried"]]}
    assert set(tried) == {"recalibrate", "ngram", "head", "head+ngram"}
    assert set(tried["recalibrate"]) <= {"base-encoder", "base-ngram"}
    clf_members = [m["path"] for m in load_bundle(out).manifest.members]
    assert clf_members and all(not p.startswith("..") for p in clf_members)  # self-contained


def test_adapt_reads_a_corrections_store(tiny_bundle: Bundle, tmp_path: Path) -> None:
    from qinggan.feedback import Correction, now, open_store

    target = str(tmp_path / "corrections.db")
    with open_store(target) as store:
        for row in labelled_rows(80, seed=5):
            label = "Positive" if row["label"] == 1 else "Negative"
            store.record(Correction(str(row["text"]), label, created_at=now()))
    out = tmp_path / "out"
    res = run_adapt(target, "--out", str(out), "--base", str(tiny_bundle.path))
    assert res.returncode == 0, res.stderr
    data = load_bundle(out).manifest.training["adapt"]["data"]
    assert data["rows"] == 80 and data["file"] == f"corrections store {target}"
