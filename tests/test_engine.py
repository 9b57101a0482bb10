"""The engine: predictions, ordering, batching plan, truncation policy, input handling."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import qinggan
from qinggan.bundle import Bundle
from qinggan.engine import Classifier, softmax
from qinggan.errors import TextTooLongError
from qinggan.settings import SettingsError


@pytest.fixture(scope="module")
def clf(tiny_bundle: Bundle) -> Classifier:
    return qinggan.load(tiny_bundle.path, threads=1)


def test_positive_and_negative(clf: Classifier) -> None:
    pos, neg = clf.predict(["这家酒店服务很好，下次还来", "太差了，非常失望"])
    assert (pos.label, pos.label_zh) == ("Positive", "正面")
    assert (neg.label, neg.label_zh) == ("Negative", "负面")
    assert pos.confidence > 0.5 and neg.confidence > 0.5
    assert set(pos.scores) == {"Negative", "Positive"}
    assert pos.scores["Positive"] == pytest.approx(pos.confidence)


def test_call_single(clf: Classifier) -> None:
    assert clf("很好").label == "Positive"


def test_predict_rejects_bare_string(clf: Classifier) -> None:
    with pytest.raises(TypeError, match="list of texts"):
        clf.predict("很好")  # type: ignore[arg-type]


def test_empty_list(clf: Classifier) -> None:
    assert clf.predict([]) == []


def test_results_in_input_order_across_batches(tiny_bundle: Bundle) -> None:
    """Mixed lengths force several sorted batches; results must still line up with inputs."""
    small = qinggan.load(tiny_bundle.path, batch_size=3, max_batch_tokens=40)
    texts = ["好" * (i % 7 + 1) if i % 2 else "差" * (i % 11 + 1) for i in range(50)]
    preds = small.predict(texts)
    assert [p.label for p in preds] == ["Positive" if i % 2 else "Negative" for i in range(50)]
    one_by_one = [small(t) for t in texts]
    assert [p.confidence for p in preds] == pytest.approx([p.confidence for p in one_by_one])


def _spy_on_batches(model: Classifier) -> list[list[int]]:
    """Record the token length of every text in each call ``model.infer`` gets."""
    calls: list[list[int]] = []
    real = model.infer

    def infer(batch):  # type: ignore[no-untyped-def]
        calls.append([len(e) for e in batch])
        return real(batch)

    model.infer = infer  # type: ignore[method-assign]
    return calls


@pytest.mark.parametrize(
    ("overhead", "expected"),
    [(math.inf, 1), (4.0, 2)],  # calls are dear: one batch; cheap: the long text alone
)
def test_predict_splits_a_batch_where_padding_costs_more_than_a_call(
    tiny_bundle: Bundle, overhead: float, expected: int
) -> None:
    model = qinggan.load(tiny_bundle.path)
    model._batch_overhead_tokens = overhead
    calls = _spy_on_batches(model)
    texts = ["好", "差", "很好", "好" * 40]
    preds = model.predict(texts)
    assert len(calls) == expected and sorted(n for c in calls for n in c) == sorted(
        len(e) for e in model.tokenize(texts)
    )
    assert [p.confidence for p in preds] == pytest.approx([model(t).confidence for t in texts])


def test_a_little_padding_is_not_worth_measuring_the_call_overhead(tiny_bundle: Bundle) -> None:
    model = qinggan.load(tiny_bundle.path)
    model.predict(["好", "这家酒店服务很好，下次还来"])  # a few padded tokens
    assert model._batch_overhead_tokens is None
    model.predict(["好", "差", "很好", "好" * 60])  # far more padding: measured now
    assert model._batch_overhead_tokens is not None


def test_batch_overhead_is_measured_once(tiny_bundle: Bundle) -> None:
    model = qinggan.load(tiny_bundle.path)
    calls = _spy_on_batches(model)
    first = model.batch_overhead_tokens
    assert first > 0 and calls  # measured by timing real calls
    measured = len(calls)
    assert model.batch_overhead_tokens == first and len(calls) == measured


def test_truncation_is_reported(tiny_bundle: Bundle) -> None:
    clf = qinggan.load(tiny_bundle.path, threads=1, long_texts="truncate")
    long, short = clf.predict(["好" * 1000, "好"])
    assert long.truncated and not short.truncated


def test_reject_policy(tiny_bundle: Bundle) -> None:
    strict = qinggan.load(tiny_bundle.path, truncate=False)
    assert strict("好" * 10).label == "Positive"
    with pytest.raises(TextTooLongError, match=r"text #1 has 1002 tokens.*limit of 64"):
        strict.predict(["好", "好" * 1000])


def test_temperature_softens_confidence(tiny_bundle: Bundle, tmp_path) -> None:
    import shutil

    from qinggan.bundle import write_bundle

    root = tmp_path / "hot"
    shutil.copytree(tiny_bundle.path, root)
    write_bundle(
        root,
        name="hot",
        labels=["Negative", "Positive"],
        models={"fp32": "model.onnx"},
        max_length=64,
        temperature=4.0,
    )
    cold, hot = qinggan.load(tiny_bundle.path)("很好"), qinggan.load(root)("很好")
    assert hot.label == cold.label
    assert 0.5 < hot.confidence < cold.confidence


def test_info(clf: Classifier) -> None:
    info = clf.info()
    assert info["name"] == "tiny-test"
    assert info["labels"] == ["Negative", "Positive"]
    assert len(info["sha256"]) == 64
    assert info["threads"] == 1


def test_prediction_to_dict(clf: Classifier) -> None:
    d = clf("很好").to_dict()
    assert d["label"] == "Positive" and d["label_zh"] == "正面"
    assert isinstance(d["confidence"], float) and 0.5 <= d["confidence"] <= 1.0
    assert d["truncated"] is False


@pytest.mark.parametrize(
    ("argument", "env", "expected"),
    [
        (None, None, None),
        (None, "0", "0"),
        (None, "yes", "1"),
        (True, "0", "1"),
        (False, None, "0"),
    ],
)
def test_onnx_runtime_spinning_follows_the_argument_then_the_env(
    tiny_bundle: Bundle,
    monkeypatch: pytest.MonkeyPatch,
    argument: bool | None,
    env: str | None,
    expected: str | None,
) -> None:
    if env is None:
        monkeypatch.delenv("QINGGAN_ORT_SPINNING", raising=False)
    else:
        monkeypatch.setenv("QINGGAN_ORT_SPINNING", env)
    options = qinggan.load(tiny_bundle.path, spinning=argument).session.get_session_options()
    key = "session.intra_op.allow_spinning"
    if expected is None:  # not set: ONNX Runtime's own default
        with pytest.raises(RuntimeError, match="does not have configuration"):
            options.get_session_config_entry(key)
    else:
        assert options.get_session_config_entry(key) == expected


def test_a_bad_spinning_env_value_is_an_error_naming_the_variable(
    tiny_bundle: Bundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QINGGAN_ORT_SPINNING", "maybe")
    with pytest.raises(SettingsError, match="QINGGAN_ORT_SPINNING must be true or false"):
        qinggan.load(tiny_bundle.path)


def test_softmax_is_stable() -> None:
    probs = softmax(np.array([[1000.0, -1000.0], [0.0, 0.0]]))
    assert np.allclose(probs, [[1.0, 0.0], [0.5, 0.5]])


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.text(max_size=300), min_size=1, max_size=8))
def test_any_unicode_gets_a_valid_answer(clf: Classifier, texts: list[str]) -> None:
    """Arbitrary Unicode (controls, emoji, combining marks) never breaks the engine, and
    batch and single answers agree."""
    preds = clf.predict(texts)
    assert len(preds) == len(texts)
    for text, pred in zip(texts, preds, strict=True):
        assert pred.label in ("Negative", "Positive")
        assert 0.5 <= pred.confidence <= 1.0
        assert sum(pred.scores.values()) == pytest.approx(1.0)
        assert clf(text).label == pred.label


def test_load_verifies_the_files_it_reads(two_variant_bundle: Bundle) -> None:
    bundle = two_variant_bundle
    with (bundle.path / "model.int8.onnx").open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(qinggan.BundleError, match=r"checksum mismatch for model\.int8\.onnx"):
        qinggan.load(bundle.path, variant="int8", threads=1)
    # a variant that is not run is not read, so it does not block loading another one
    assert qinggan.load(bundle.path, variant="fp32", threads=1)("很好").label == "Positive"
    with pytest.raises(qinggan.BundleError, match="checksum mismatch"):
        qinggan.load_bundle(bundle.path)  # full verification still covers every file
    with pytest.raises(qinggan.BundleError, match="cannot load ONNX model"):
        qinggan.load(bundle.path, variant="int8", threads=1, verify=False)  # ORT's own error


def test_a_corrupt_tokenizer_is_reported_as_a_checksum_mismatch(
    two_variant_bundle: Bundle,
) -> None:
    bundle = two_variant_bundle
    (bundle.path / "tokenizer.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(qinggan.BundleError, match=r"checksum mismatch for tokenizer\.json"):
        qinggan.load(bundle.path, threads=1)


def test_a_classifier_is_a_model_and_load_takes_the_load_options(tiny_bundle: Bundle) -> None:
    from qinggan.interface import Model

    clf = qinggan.load(tiny_bundle.path, threads=1, batch_size=5, truncate=False)
    assert isinstance(clf, Model) and isinstance(clf, Classifier)
    assert clf.options == qinggan.LoadOptions(threads=1, batch_size=5, truncate=False)
    assert (clf.batch_size, clf.max_batch_tokens, clf.truncate) == (5, 8192, False)
    with pytest.raises(TypeError, match="nope"):
        qinggan.load(tiny_bundle.path, nope=1)
