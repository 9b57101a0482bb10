"""Ensemble bundles: members' probabilities averaged, validated like any bundle, served as one."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import qinggan
from qinggan.bundle import MANIFEST_NAME, Bundle, load_bundle, write_bundle
from qinggan.ensemble import Ensemble
from qinggan.errors import BundleError
from qinggan.testing import make_tiny_bundle
from serverproc import ServerProcess

TEXTS = ["这家酒店服务很好，下次还来", "太差了，非常失望", "hello", "好" * 300]


def make_ensemble(
    root: Path, weights: tuple[float, float] = (3.0, 1.0), temperature: float = 1.0
) -> Bundle:
    make_tiny_bundle(root / "a")
    make_tiny_bundle(root / "b", with_token_types=True, max_length=16)
    return write_bundle(
        root,
        name="tiny-ensemble",
        labels=["Negative", "Positive"],
        models={},
        max_length=64,
        members=[{"path": "a", "weight": weights[0]}, {"path": "b", "weight": weights[1]}],
        temperature=temperature,
    )


@pytest.fixture
def ensemble_dir(tmp_path: Path) -> Path:
    return make_ensemble(tmp_path / "ens").path


def test_probabilities_are_the_weighted_average(ensemble_dir: Path) -> None:
    ens = qinggan.load(ensemble_dir)
    assert isinstance(ens, Ensemble)
    a, b = qinggan.load(ensemble_dir / "a"), qinggan.load(ensemble_dir / "b")
    for text, pred, pa, pb in zip(
        TEXTS, ens.predict(TEXTS), a.predict(TEXTS), b.predict(TEXTS), strict=True
    ):
        expected = 0.75 * pa.scores["Positive"] + 0.25 * pb.scores["Positive"]
        assert pred.scores["Positive"] == pytest.approx(expected), text
        assert pred.truncated == (pa.truncated or pb.truncated)
    assert ens("很好").label == "Positive" and ens("太差").label == "Negative"


def test_temperature_rescales_the_average(tmp_path: Path) -> None:
    plain = qinggan.load(make_ensemble(tmp_path / "plain").path)
    soft = qinggan.load(make_ensemble(tmp_path / "soft", temperature=2.0).path)
    for p, q in zip(plain.predict(TEXTS[:2]), soft.predict(TEXTS[:2]), strict=True):
        assert p.label == q.label
        odds = p.scores["Positive"] / p.scores["Negative"]
        assert q.scores["Positive"] / q.scores["Negative"] == pytest.approx(odds**0.5)


def test_info_and_identity(ensemble_dir: Path) -> None:
    ens = qinggan.load(ensemble_dir)
    info = ens.info()
    assert [m["weight"] for m in info["members"]] == [0.75, 0.25]
    assert info["variant"] == "fp32+fp32"
    assert info["sha256"] == load_bundle(ensemble_dir).sha256()


def test_tampered_member_is_caught(ensemble_dir: Path) -> None:
    with (ensemble_dir / "b" / "model.onnx").open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(BundleError, match="checksum mismatch for model.onnx"):
        qinggan.load(ensemble_dir)


def test_swapped_member_manifest_is_caught(ensemble_dir: Path) -> None:
    manifest = json.loads((ensemble_dir / "b" / MANIFEST_NAME).read_text(encoding="utf-8"))
    manifest["temperature"] = 5.0
    (ensemble_dir / "b" / MANIFEST_NAME).write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(BundleError, match="checksum mismatch for b/qinggan.json"):
        load_bundle(ensemble_dir)


def test_missing_member(ensemble_dir: Path) -> None:
    shutil.rmtree(ensemble_dir / "b")
    with pytest.raises(BundleError, match="missing file b/qinggan.json"):
        load_bundle(ensemble_dir)


def test_nested_ensembles_are_refused(tmp_path: Path) -> None:
    inner = make_ensemble(tmp_path / "outer" / "inner").path
    assert inner.is_dir()
    make_tiny_bundle(tmp_path / "outer" / "plain")
    with pytest.raises(BundleError, match="cannot be an ensemble"):
        write_bundle(
            tmp_path / "outer",
            name="nested",
            labels=["Negative", "Positive"],
            models={},
            max_length=64,
            members=[{"path": "inner"}, {"path": "plain"}],
        )


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([{"path": "a", "weight": 0}], "positive weight"),
        ([{"weight": 1}], "needs a 'path'"),
    ],
)
def test_bad_members(ensemble_dir: Path, members: list[dict], message: str) -> None:
    manifest = json.loads((ensemble_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
    manifest["members"] = members
    (ensemble_dir / MANIFEST_NAME).write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(BundleError, match=message):
        load_bundle(ensemble_dir)


def test_member_label_mismatch(tmp_path: Path) -> None:
    root = tmp_path / "ens"
    make_tiny_bundle(root / "a")
    other = make_tiny_bundle(root / "b").path
    write_bundle(
        other, name="other", labels=["Bad", "Good"], models={"fp32": "model.onnx"}, max_length=64
    )
    write_bundle(
        root,
        name="mixed",
        labels=["Negative", "Positive"],
        models={},
        max_length=64,
        members=[{"path": "a"}, {"path": "b"}],
    )
    with pytest.raises(BundleError, match="member 'other' has labels"):
        qinggan.load(root)


def test_cli_predict(ensemble_dir: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "qinggan.cli", "predict", "-m", str(ensemble_dir), "服务很好"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("Positive\t")


def test_served_over_http(ensemble_dir: Path) -> None:
    truncating = {"QINGGAN_LONG_TEXTS": "truncate"}
    with ServerProcess(ensemble_dir, env=truncating) as server, server.client() as client:
        one = client.post("/analyze", json={"text": "服务很好"}).json()
        many = client.post("/v1/analyze", json={"texts": TEXTS}).json()["results"]
        info = client.get("/info").json()
    assert one["label"] == "Positive"
    assert [r["label"] for r in many[:2]] == ["Positive", "Negative"]
    assert many[3]["truncated"] is True
    assert info["model"]["name"] == "tiny-ensemble"


def _gated(root: Path, name: str, confidence: float | None) -> Path:
    fields = {"gate": {"member": 1, "confidence": confidence}} if confidence else {}
    (root / name).mkdir()
    return write_bundle(
        root / name,
        name=name,
        labels=["Negative", "Positive"],
        models={},
        max_length=16,
        members=[{"path": "../a", "weight": 1.0}, {"path": "../b", "weight": 1.0}],
        temperature=0.8,
        **fields,
    ).path


def test_a_gate_member_answers_what_it_is_sure_of_and_the_rest_get_the_ensemble(
    tmp_path: Path,
) -> None:
    make_tiny_bundle(tmp_path / "a")
    make_tiny_bundle(tmp_path / "b", seed=1, max_length=16)
    texts = [*TEXTS, "好", "差", "一般", "好差", "很好很好", "失望", "ok", "还行吧"]
    gate_member = qinggan.load(tmp_path / "b").predict(texts)
    confidences = sorted(p.confidence for p in gate_member)
    threshold = confidences[len(confidences) // 2]  # about half are sure, half are not
    plain = qinggan.load(_gated(tmp_path, "plain", None)).predict(texts)
    gated = qinggan.load(_gated(tmp_path, "gated", threshold))
    assert gated.info()["gate"] == {"member": "tiny-test", "confidence": threshold}
    sure = 0
    for text, got, alone, full in zip(texts, gated.predict(texts), gate_member, plain, strict=True):
        expected = alone if alone.confidence >= threshold else full
        sure += alone.confidence >= threshold
        assert got.scores == pytest.approx(expected.scores), text
    assert 0 < sure < len(texts)  # both paths were taken
    everyone = qinggan.load(_gated(tmp_path, "low", 0.5)).predict(texts)
    assert [p.scores for p in everyone] == [p.scores for p in gate_member]


def test_predict_batches_the_texts_a_cascade_passes_on_together(tmp_path: Path) -> None:
    """The other members see only the unsure texts, in batches of their own, not a few per
    batch of the gate member's (``infer``, one micro-batch, still runs them as they come)."""
    make_tiny_bundle(tmp_path / "a")
    make_tiny_bundle(tmp_path / "b", seed=1, max_length=16)
    texts = [f"{'好' * (i % 5 + 1)}{'差' * (i % 3)}" for i in range(24)]
    confidences = sorted(p.confidence for p in qinggan.load(tmp_path / "b").predict(texts))
    threshold = confidences[len(confidences) // 2]
    gated = qinggan.load(_gated(tmp_path, "gated", threshold), batch_size=2)
    other = gated.members[0]
    other._batch_overhead_tokens = math.inf  # no padding splits: count batches only
    seen: list[int] = []
    real = other.infer
    other.infer = lambda batch: (seen.append(len(batch)), real(batch))[1]  # type: ignore[method-assign]
    bulk = gated.predict(texts)
    unsure = sum(p.confidence < threshold for p in qinggan.load(tmp_path / "b").predict(texts))
    assert 0 < unsure < len(texts) and sum(seen) == unsure
    assert len(seen) == math.ceil(unsure / 2)  # full batches of 2
    encoded = gated.tokenize(texts)
    one_by_one = [gated.to_predictions(gated.infer([e]), [e])[0] for e in encoded]
    assert [p.scores for p in bulk] == [pytest.approx(p.scores) for p in one_by_one]


@pytest.mark.parametrize(
    ("gate", "message"),
    [
        ({"member": 2, "confidence": 0.9}, "gate member must index the members"),
        ({"member": 0, "confidence": 0}, r"gate confidence must be in \(0, 1\]"),
        ({"member": "a", "confidence": 0.9}, "gate member must index the members"),
    ],
)
def test_a_bad_gate_is_refused(tmp_path: Path, gate: dict[str, object], message: str) -> None:
    make_ensemble(tmp_path / "ens")
    manifest = json.loads((tmp_path / "ens" / MANIFEST_NAME).read_text())
    manifest["gate"] = gate
    (tmp_path / "ens" / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=message):
        load_bundle(tmp_path / "ens", verify=False)


def test_an_ensemble_is_a_model_and_hands_its_options_to_members(ensemble_dir: Path) -> None:
    from qinggan.interface import Model

    ens = qinggan.load(ensemble_dir, threads=1, batch_size=3, max_batch_tokens=99)
    assert isinstance(ens, Ensemble) and isinstance(ens, Model)
    for member in ens.members:
        assert isinstance(member, Model)
        assert (member.threads, member.batch_size, member.max_batch_tokens) == (1, 3, 99)
