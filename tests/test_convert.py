"""The checkpoint converter: tiny random checkpoints in both layouts, converted and verified."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import torch  # noqa: E402

from qinggan import load  # noqa: E402
from qinggan.cli import main  # noqa: E402
from qinggan.convert import (  # noqa: E402
    CheckpointError,
    ParityError,
    convert_checkpoint,
    load_checkpoint,
    make_random_checkpoint,
    map_labels,
)
from qinggan.convert.checkpoints import _modelscope_labels, map_structbert_keys  # noqa: E402
from qinggan.convert.labels import GENERIC_ASSUMPTION  # noqa: E402
from qinggan.convert.synthetic import chinese_vocab  # noqa: E402
from qinggan.convert.texts import BUILTIN_TEXTS  # noqa: E402
from qinggan.errors import QingganError  # noqa: E402

MAX_LENGTH = 64
LAYOUTS = ("hf", "modelscope")
QINGGAN = [sys.executable, "-c", "from qinggan.cli import main; main()"]


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("checkpoints")
    return {layout: make_random_checkpoint(root / layout, layout) for layout in LAYOUTS}


@pytest.fixture(scope="session")
def converted(checkpoints: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("bundles")
    return {
        layout: convert_checkpoint(src, root / layout, max_length=MAX_LENGTH)
        for layout, src in checkpoints.items()
    }


# --------------------------------------------------------------------------- conversion


@pytest.mark.slow
@pytest.mark.parametrize("layout", LAYOUTS)
def test_fp32_parity_within_tolerance(converted, layout: str) -> None:
    result = converted[layout]
    report = result.report
    assert report.fp32_max_abs_diff <= 1e-4
    assert report.token_mismatches == 0
    assert report.truncated > 0  # the built-in texts include over-long ones
    manifest = result.bundle.manifest
    assert manifest.parity["fp32_max_abs_diff"] <= 1e-4
    assert manifest.parity["texts"] == report.texts >= 90
    assert manifest.source["layout"] == layout
    assert manifest.inputs == ("input_ids", "attention_mask", "token_type_ids")
    assert manifest.max_length == MAX_LENGTH


@pytest.mark.slow
@pytest.mark.parametrize("layout", LAYOUTS)
def test_labels_are_canonical(converted, layout: str) -> None:
    manifest = converted[layout].bundle.manifest
    assert manifest.labels == ("Negative", "Positive")
    assert manifest.display_labels == ("负面", "正面")
    expected_source = ["Negative", "Positive"] if layout == "hf" else ["负面", "正面"]
    assert manifest.source["source_labels"] == expected_source


@pytest.mark.slow
@pytest.mark.parametrize("layout", LAYOUTS)
def test_int8_agrees_and_becomes_default(converted, layout: str) -> None:
    result = converted[layout]
    int8 = result.report.int8
    assert int8 is not None and int8.accepted and not result.int8_refused
    assert int8.label_agreement >= 0.99
    assert 0.0 < int8.max_prob_diff < 0.5
    manifest = result.bundle.manifest
    assert manifest.models == {"fp32": "model.onnx", "int8": "model.int8.onnx"}
    assert manifest.default_variant == "int8"
    assert manifest.parity["int8"]["accepted"] is True


@pytest.mark.slow
def test_converted_bundle_serves_like_pytorch(converted, checkpoints) -> None:
    """The engine's probabilities on the fp32 variant equal PyTorch's softmax."""
    texts = ["这家酒店服务很好，下次还来。", "太失望了。", "OK啦 😀"]
    clf = load(converted["hf"].bundle.path, variant="fp32")
    checkpoint = load_checkpoint(checkpoints["hf"])
    batch = checkpoint.tokenizer(
        texts, padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt"
    )
    with torch.no_grad():
        expected = torch.softmax(checkpoint.model(**batch).logits, dim=-1)
    for pred, probs in zip(clf.predict(texts), expected, strict=True):
        assert [pred.scores[label] for label in clf.labels] == pytest.approx(
            probs.tolist(), abs=1e-4
        )


@pytest.mark.slow
def test_int8_refused_below_threshold_via_cli(monkeypatch, capsys, checkpoints, tmp_path) -> None:
    out = tmp_path / "refused"
    monkeypatch.setattr(
        sys, "argv", ["qinggan", "convert", str(checkpoints["modelscope"]), str(out),
                      "--max-length", "32", "--min-int8-agreement", "1.01"],
    )  # fmt: skip
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code in (0, None)  # a refused int8 is a warning, not an error
    captured = capsys.readouterr()
    assert "REFUSED" in captured.err
    assert "int8: label agreement" in captured.out  # the parity table
    manifest = json.loads((out / "qinggan.json").read_text(encoding="utf-8"))
    assert manifest["models"] == {"fp32": "model.onnx"}
    assert manifest["default_variant"] == "fp32"
    assert manifest["parity"]["int8"]["accepted"] is False
    # every preset was tried before giving up, and each attempt is on record
    assert len(manifest["parity"]["int8"]["attempts"]) == 4
    assert not (out / "model.int8.onnx").exists()


@pytest.mark.slow
def test_force_int8_keeps_variant_but_not_as_default(checkpoints, tmp_path: Path) -> None:
    result = convert_checkpoint(
        checkpoints["hf"], tmp_path / "forced", max_length=32, min_int8_agreement=1.01,
        force_int8=True, int8_search=False, parity_texts=["用户自己的文本：还不错"],
    )  # fmt: skip
    assert result.report.texts == len(BUILTIN_TEXTS) + 1
    manifest = result.bundle.manifest
    assert set(manifest.models) == {"fp32", "int8"}
    assert manifest.default_variant == "fp32"
    assert result.report.int8 is not None and result.report.int8.forced
    assert [a["preset"] for a in result.report.int8.attempts] == ["u8 per-channel"]


@pytest.mark.slow
def test_fp32_parity_failure_leaves_nothing(checkpoints, tmp_path: Path) -> None:
    out = tmp_path / "parent" / "bundle"
    with pytest.raises(ParityError, match="differ from PyTorch") as exc:
        convert_checkpoint(checkpoints["hf"], out, max_length=16, int8=False, tolerance=1e-12)
    assert not exc.value.report.fp32_ok
    assert not out.exists()
    assert list(out.parent.iterdir()) == []  # the temporary directory is gone too


@pytest.mark.slow
def test_hf_vocab_only_generic_labels(tmp_path: Path) -> None:
    """vocab.txt without tokenizer.json, LABEL_0/LABEL_1: the documented assumption applies."""
    src = make_random_checkpoint(
        tmp_path / "ck", "hf", num_layers=1, hidden=32, heads=2, intermediate=64, vocab=3000,
        label_names=["LABEL_0", "LABEL_1"],
    )  # fmt: skip
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (src / name).unlink()
    result = convert_checkpoint(src, tmp_path / "bundle", max_length=48, int8=False)
    manifest = result.bundle.manifest
    assert manifest.labels == ("Negative", "Positive")
    assert manifest.source["label_assumption"] == GENERIC_ASSUMPTION
    assert manifest.models == {"fp32": "model.onnx"} and manifest.default_variant == "fp32"
    assert result.report.token_mismatches == 0  # fast tokenizer == Python WordPiece
    assert result.report.fp32_max_abs_diff <= 1e-4


@pytest.mark.slow
def test_predict_end_to_end_on_converted_bundle(converted) -> None:
    bundle = converted["modelscope"].bundle.path
    proc = subprocess.run(
        [*QINGGAN, "predict", "-m", str(bundle), "--json", "非常满意！", "太失望了。"],
        capture_output=True, text=True, timeout=120, env=_env(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    expected = load(bundle).predict(["非常满意！", "太失望了。"])
    assert [r["label"] for r in rows] == [p.label for p in expected]
    assert all(r["label_zh"] in ("正面", "负面") for r in rows)
    assert "torch" not in _imported_by_predict(bundle)


def _imported_by_predict(bundle: Path) -> str:
    code = (
        "import sys; sys.argv=['qinggan','predict','-m',sys.argv[1],'好'];"
        "from qinggan.cli import app\n"
        "try: app()\n"
        "except SystemExit: pass\n"
        "print(' '.join(m for m in ('torch','transformers') if m in sys.modules))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(bundle)], capture_output=True, text=True, timeout=120,
        env=_env(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()[-1] if proc.stdout.strip() else ""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QINGGAN_")}
    env["PYTHONIOENCODING"] = "utf-8"
    return env


# --------------------------------------------------------------------------- CLI errors


def _run_main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str):
    monkeypatch.setattr(sys, "argv", ["qinggan", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    err = capsys.readouterr().err
    return exc.value.code, err


def test_cli_missing_directory(monkeypatch, capsys, tmp_path: Path) -> None:
    code, err = _run_main(
        monkeypatch, capsys, "convert", str(tmp_path / "nope"), str(tmp_path / "o")
    )
    assert code == 1
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "does not exist" in err


def test_cli_unknown_layout(monkeypatch, capsys, tmp_path: Path) -> None:
    code, err = _run_main(
        monkeypatch, capsys, "convert", str(tmp_path), str(tmp_path / "o"),
        "--layout", "onnx",
    )  # fmt: skip
    # a bad choice is a usage error now (exit 2, the allowed values listed); the converter
    # still refuses an unknown layout from the Python API with the same one-line message
    assert code == 2
    assert "'onnx' is not one of 'auto', 'hf', 'modelscope'" in err
    with pytest.raises(CheckpointError, match="^unknown layout 'onnx'"):
        load_checkpoint(tmp_path, "onnx")


@pytest.mark.slow
def test_cli_missing_weights(monkeypatch, capsys, checkpoints, tmp_path: Path) -> None:
    src = tmp_path / "no-weights"
    shutil.copytree(checkpoints["modelscope"], src)
    (src / "pytorch_model.bin").unlink()
    code, err = _run_main(monkeypatch, capsys, "convert", str(src), str(tmp_path / "o"))
    assert code == 1
    assert "has no weights" in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_cli_not_a_checkpoint(monkeypatch, capsys, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    code, err = _run_main(
        monkeypatch, capsys, "convert", str(tmp_path / "empty"), str(tmp_path / "o")
    )
    assert code == 1 and "neither config.json" in err


# --------------------------------------------------------------------------- checkpoint reading


def test_structbert_key_mapping_prefixes_and_heads() -> None:
    t = torch.zeros(1)
    state = {
        "encoder.embeddings.word_embeddings.weight": t,
        "encoder.embeddings.LayerNorm.gamma": t,
        "encoder.embeddings.LayerNorm.beta": t,
        "encoder.embeddings.position_ids": t,
        "encoder.encoder.layer.0.attention.self.query.weight": t,
        "encoder.pooler.dense.weight": t,
        "head.classifier.weight": t,
        "cls.predictions.bias": t,
    }
    mapped, note = map_structbert_keys(state)
    assert note["backbone_prefix"] == "encoder."
    assert set(mapped) == {
        "bert.embeddings.word_embeddings.weight",
        "bert.embeddings.LayerNorm.weight",
        "bert.embeddings.LayerNorm.bias",
        "bert.encoder.layer.0.attention.self.query.weight",
        "bert.pooler.dense.weight",
        "classifier.weight",
        "cls.predictions.bias",  # kept, so loading reports it as unexpected
    }
    bare, note = map_structbert_keys({"embeddings.word_embeddings.weight": t, "classifier.bias": t})
    assert set(bare) == {"bert.embeddings.word_embeddings.weight", "classifier.bias"}


@pytest.mark.slow
def test_unexpected_and_missing_keys_are_named(checkpoints, tmp_path: Path) -> None:
    src = tmp_path / "extra-key"
    shutil.copytree(checkpoints["modelscope"], src)
    state = torch.load(src / "pytorch_model.bin", weights_only=True)
    state["bert.mystery.weight"] = torch.zeros(2)
    del state["bert.pooler.dense.bias"]
    torch.save(state, src / "pytorch_model.bin")
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(src)
    message = str(exc.value)
    assert "bert.mystery.weight" in message and "bert.pooler.dense.bias" in message


@pytest.mark.slow
def test_modelscope_encoder_prefix_checkpoint_loads(tmp_path: Path) -> None:
    src = make_random_checkpoint(
        tmp_path / "ms", "modelscope", num_layers=1, hidden=32, heads=2, intermediate=64,
        vocab=300, backbone_prefix="encoder", label_names=["negative", "positive"],
    )  # fmt: skip
    checkpoint = load_checkpoint(src)
    assert checkpoint.layout == "modelscope"
    assert checkpoint.info["backbone_prefix"] == "encoder."
    assert checkpoint.source_labels == ["negative", "positive"]
    assert checkpoint.default_max_length == 128  # ModelScope's preprocessor default


def test_chinese_vocab_pads_and_cuts() -> None:
    full = chinese_vocab()
    assert full[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert "好" in full and "差" in full and len(set(full)) == len(full)
    padded = chinese_vocab(21128)  # StructBERT/bert-base-chinese size
    assert len(padded) == 21128 and padded[-1].startswith("[unused")
    assert chinese_vocab(300) == full[:300]


def test_modelscope_label_lookup_order(tmp_path: Path) -> None:
    config = {"id2label": {"0": "from-config-0", "1": "from-config-1"}}
    assert _modelscope_labels(tmp_path, {}, config) == ["from-config-0", "from-config-1"]
    cfg = {"model": {"id2label": {"1": "正面", "0": "负面"}}}
    assert _modelscope_labels(tmp_path, cfg, config) == ["负面", "正面"]
    cfg["preprocessor"] = {"label2id": {"x": 1, "y": 0}}
    assert _modelscope_labels(tmp_path, cfg, config) == ["负面", "正面"]  # model wins
    (tmp_path / "label_mapping.json").write_text('{"neg": 0, "pos": 1}', encoding="utf-8")
    assert _modelscope_labels(tmp_path, cfg, config) == ["neg", "pos"]
    cfg["dataset"] = {"train": {"labels": ["a", "b"]}}
    assert _modelscope_labels(tmp_path, cfg, config) == ["a", "b"]


# --------------------------------------------------------------------------- labels


@pytest.mark.parametrize(
    ("source", "labels", "display"),
    [
        (["负面", "正面"], ("Negative", "Positive"), ("负面", "正面")),
        (["POSITIVE", "negative"], ("Positive", "Negative"), ("正面", "负面")),
        (["neg", "neutral", "pos"], ("Negative", "Neutral", "Positive"), ("负面", "中性", "正面")),
        (["LABEL_0", "LABEL_1"], ("Negative", "Positive"), ("负面", "正面")),
        (["sports", "finance"], ("sports", "finance"), ("sports", "finance")),
        (["消极", "积极"], ("Negative", "Positive"), ("负面", "正面")),
    ],
)
def test_label_mapping(source, labels, display) -> None:
    mapped = map_labels(source)
    assert mapped.labels == labels
    assert mapped.display_labels == display
    assert mapped.assumption == (GENERIC_ASSUMPTION if source[0] == "LABEL_0" else "")


def test_label_override_and_duplicates() -> None:
    assert map_labels(["LABEL_0", "LABEL_1"], ["正面", "负面"]).labels == ("Positive", "Negative")
    with pytest.raises(QingganError, match="2 outputs"):
        map_labels(["a", "b"], ["x"])
    with pytest.raises(QingganError, match="duplicates"):
        map_labels(["positive", "正面"])
