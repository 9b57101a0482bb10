"""Bundle manifest validation: every way a bundle can be broken gets its own clear error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import qinggan
from qinggan.bundle import (
    MANIFEST_NAME,
    Bundle,
    Manifest,
    builtin_models,
    load_bundle,
    resolve_model,
    rewrite_manifest,
    write_bundle,
)
from qinggan.errors import BundleError
from qinggan.testing import make_tiny_bundle, tiny_vocab, tiny_weights


@pytest.fixture
def bundle_dir(tmp_path: Path) -> Path:
    return make_tiny_bundle(tmp_path / "b").path


def edit_manifest(bundle_dir: Path, **changes: object) -> None:
    path = bundle_dir / MANIFEST_NAME
    data = json.loads(path.read_text(encoding="utf-8"))
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path.write_text(json.dumps(data), encoding="utf-8")


def test_valid_bundle_loads(bundle_dir: Path) -> None:
    bundle = load_bundle(bundle_dir)
    assert bundle.manifest.labels == ("Negative", "Positive")
    assert bundle.manifest.display_labels == ("负面", "正面")
    assert bundle.model_path().name == "model.onnx"
    assert bundle.manifest.preferred_variant == "fp32"


def test_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="is not a directory"):
        load_bundle(tmp_path / "nothing")


def test_missing_manifest(bundle_dir: Path) -> None:
    (bundle_dir / MANIFEST_NAME).unlink()
    with pytest.raises(BundleError, match="has no qinggan.json"):
        load_bundle(bundle_dir)


def test_manifest_not_json(bundle_dir: Path) -> None:
    (bundle_dir / MANIFEST_NAME).write_text("{not json", encoding="utf-8")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(bundle_dir)


def test_manifest_not_an_object(bundle_dir: Path) -> None:
    (bundle_dir / MANIFEST_NAME).write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(BundleError, match="must hold a JSON object"):
        load_bundle(bundle_dir)


@pytest.mark.parametrize("field", ["name", "labels", "models", "files", "max_length"])
def test_missing_required_field(bundle_dir: Path, field: str) -> None:
    edit_manifest(bundle_dir, **{field: None})
    with pytest.raises(BundleError, match=f"missing field.*{field}"):
        load_bundle(bundle_dir)


def test_missing_model_file(bundle_dir: Path) -> None:
    (bundle_dir / "model.onnx").unlink()
    with pytest.raises(BundleError, match="missing file model.onnx"):
        load_bundle(bundle_dir)


def test_missing_tokenizer_file(bundle_dir: Path) -> None:
    (bundle_dir / "tokenizer.json").unlink()
    with pytest.raises(BundleError, match="missing file tokenizer.json"):
        load_bundle(bundle_dir)


def test_tampered_model_fails_checksum(bundle_dir: Path) -> None:
    with (bundle_dir / "model.onnx").open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(BundleError, match="checksum mismatch for model.onnx"):
        load_bundle(bundle_dir)


def test_checksum_can_be_skipped(bundle_dir: Path) -> None:
    with (bundle_dir / "model.onnx").open("ab") as fh:
        fh.write(b"\0")
    assert load_bundle(bundle_dir, verify=False).name == "tiny-test"


def test_model_without_checksum(bundle_dir: Path) -> None:
    edit_manifest(bundle_dir, files={})
    with pytest.raises(BundleError, match="no checksum listed"):
        load_bundle(bundle_dir)


def test_label_display_count_mismatch(bundle_dir: Path) -> None:
    edit_manifest(bundle_dir, display_labels=["负面"])
    with pytest.raises(BundleError, match="2 labels but 1 display labels"):
        load_bundle(bundle_dir)


def test_single_label_rejected(bundle_dir: Path) -> None:
    edit_manifest(bundle_dir, labels=["Positive"], display_labels=["正面"])
    with pytest.raises(BundleError, match="at least two labels"):
        load_bundle(bundle_dir)


def test_labels_must_be_strings(bundle_dir: Path) -> None:
    edit_manifest(bundle_dir, labels=[0, 1])
    with pytest.raises(BundleError, match="labels must be a list of strings"):
        load_bundle(bundle_dir)


def test_unknown_variant(bundle_dir: Path) -> None:
    edit_manifest(bundle_dir, models={"fp16": "model.onnx"})
    with pytest.raises(BundleError, match="unknown model variants"):
        load_bundle(bundle_dir)


def test_bad_default_variant(bundle_dir: Path) -> None:
    edit_manifest(bundle_dir, default_variant="int8")
    with pytest.raises(BundleError, match="default_variant 'int8' is not among its models"):
        load_bundle(bundle_dir)


def test_newer_format_version(bundle_dir: Path) -> None:
    edit_manifest(bundle_dir, format_version=99)
    with pytest.raises(BundleError, match="upgrade qinggan"):
        load_bundle(bundle_dir)


def test_bad_max_length(bundle_dir: Path) -> None:
    edit_manifest(bundle_dir, max_length=0)
    with pytest.raises(BundleError, match="max_length"):
        load_bundle(bundle_dir)


def test_label_count_mismatch_with_graph(bundle_dir: Path) -> None:
    """The manifest names 3 labels but the ONNX graph produces 2 logits."""
    edit_manifest(
        bundle_dir,
        labels=["Negative", "Neutral", "Positive"],
        display_labels=["负面", "中性", "正面"],
    )
    with pytest.raises(BundleError, match="2 outputs but the manifest names 3 labels"):
        qinggan.load(bundle_dir)


def _reseal(root: Path, name: str) -> Bundle:
    """Rewrite the tiny bundle's manifest after a file was changed, so checksums pass."""
    return write_bundle(
        root,
        name=name,
        labels=["Negative", "Positive"],
        models={"fp32": "model.onnx"},
        max_length=64,
    )


def test_wrong_input_names(tmp_path: Path) -> None:
    import onnx

    root = make_tiny_bundle(tmp_path / "b").path
    model = onnx.load(str(root / "model.onnx"))
    model.graph.input[0].name = "ids"
    for node in model.graph.node:
        node.input[:] = ["ids" if n == "input_ids" else n for n in node.input]
    onnx.save(model, str(root / "model.onnx"))
    _reseal(root, "renamed")  # checksums match the tampered file
    with pytest.raises(
        BundleError, match=r"model inputs \['ids', 'attention_mask'\] are not supported"
    ):
        qinggan.load(root)


def test_corrupt_onnx(bundle_dir: Path) -> None:
    (bundle_dir / "model.onnx").write_bytes(b"this is not a protobuf")
    _reseal(bundle_dir, "corrupt")  # checksums match the tampered file
    with pytest.raises(BundleError, match="cannot load ONNX model"):
        qinggan.load(bundle_dir)


def test_corrupt_tokenizer(bundle_dir: Path) -> None:
    (bundle_dir / "tokenizer.json").write_text("{}", encoding="utf-8")
    _reseal(bundle_dir, "corrupt")  # checksums match the tampered file
    with pytest.raises(BundleError, match="cannot read tokenizer"):
        qinggan.load(bundle_dir)


def test_write_bundle_requires_files(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="does not exist"):
        write_bundle(
            tmp_path,
            name="x",
            labels=["Negative", "Positive"],
            models={"fp32": "model.onnx"},
            max_length=8,
        )


def test_int8_preferred_when_present(two_variant_bundle: Bundle) -> None:
    bundle, root = two_variant_bundle, two_variant_bundle.path
    assert bundle.manifest.preferred_variant == "int8"
    assert qinggan.load(root).variant == "int8"
    assert qinggan.load(root, variant="fp32").variant == "fp32"
    with pytest.raises(BundleError, match="has no 'fp16' model"):
        bundle.model_path("fp16")


def test_manifest_roundtrip() -> None:
    m = Manifest(
        name="m",
        labels=("Negative", "Positive"),
        display_labels=("负面", "正面"),
        max_length=16,
        models={"fp32": "a.onnx"},
        files={"a.onnx": "0" * 64},
    )
    assert Manifest.from_dict(json.loads(m.to_json())) == m


def test_resolve_model_by_path_and_env(bundle_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_model(bundle_dir) == bundle_dir
    monkeypatch.setenv("QINGGAN_MODEL", str(bundle_dir))
    assert resolve_model(None) == bundle_dir


def test_resolve_unknown_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QINGGAN_MODEL", raising=False)
    with pytest.raises(BundleError, match="neither a directory nor a built-in model"):
        resolve_model("no-such-model")


def test_builtins_are_valid_bundles() -> None:
    """Whatever ships inside the package must load and verify."""
    for name, path in builtin_models().items():
        assert load_bundle(path).manifest.labels == ("Negative", "Positive"), name


def test_tiny_weights_are_deterministic() -> None:
    vocab = tiny_vocab()
    assert (tiny_weights(vocab) == tiny_weights(vocab)).all()


def test_token_type_input_is_fed(tmp_path: Path) -> None:
    root = tmp_path / "tt"
    make_tiny_bundle(root, with_token_types=True)
    clf = qinggan.load(root)
    assert "token_type_ids" in clf._input_names
    assert clf("服务很好").label == "Positive"


def test_rewrite_manifest_changes_only_what_it_is_given(bundle_dir: Path, tmp_path: Path) -> None:
    before = (bundle_dir / MANIFEST_NAME).read_text(encoding="utf-8")
    rewrite_manifest(bundle_dir)
    assert (bundle_dir / MANIFEST_NAME).read_text(encoding="utf-8") == before

    (bundle_dir / "card.md").write_text("notes", encoding="utf-8")
    old = load_bundle(bundle_dir).manifest
    write_bundle(bundle_dir, name=old.name, labels=old.labels, models=old.models,
                 max_length=old.max_length, extra_files=["card.md"])  # fmt: skip
    m = rewrite_manifest(bundle_dir, metrics={"test_accuracy": {"all": 0.9}}).manifest
    assert m.metrics == {"test_accuracy": {"all": 0.9}}
    assert "card.md" in m.files and m.models == old.models and m.name == old.name

    # into another directory, with fewer files: what is not copied there is not listed
    dest = tmp_path / "copy"
    dest.mkdir()
    for rel in (m.tokenizer, *m.models.values()):
        (dest / rel).write_bytes((bundle_dir / rel).read_bytes())
    copied = rewrite_manifest(bundle_dir, out_dir=dest, extra_files=()).manifest
    assert set(copied.files) == {m.tokenizer, *m.models.values()}
    assert copied.metrics == m.metrics
    assert load_bundle(bundle_dir).manifest.files == m.files  # the source is untouched
