"""Explanations in the engine: clauses, phrases, mixed, for every kind of bundle."""

from __future__ import annotations

import functools
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import qinggan
from qinggan.bundle import Bundle, write_bundle
from qinggan.explain import Explanation, Span, explain_texts, explainer_for
from qinggan.explain.clauses import MAX_CLAUSES, clauses, phrase_candidates
from qinggan.explain.explainer import Explainer, polarity_columns, relative
from qinggan.explain.mixed import is_mixed
from qinggan.explain.ngram import LinearNgram
from qinggan.testing import make_tiny_bundle

MIXED = "服务很好，但是房间太差了"
ODD_TEXTS = ["", "   ", "😀😀😀", "好", "a", "好" * 100_000, "Good 服务很好 but 房间太差 😀 𠀀!"]


@pytest.fixture(scope="module")
def tiny(tiny_bundle: Bundle) -> qinggan.Classifier:
    return qinggan.load(tiny_bundle.path)


def make_cascade(root: Path, confidence: float) -> Bundle:
    make_tiny_bundle(root / "a")
    make_tiny_bundle(root / "b", seed=1)
    return write_bundle(
        root,
        name="tiny-cascade",
        labels=["Negative", "Positive"],
        models={},
        max_length=64,
        members=[{"path": "a", "weight": 1.0}, {"path": "b", "weight": 3.0}],
        gate={"member": 1, "confidence": confidence},
    )


def check_spans(text: str, explanation: Explanation) -> None:
    """The span contract: in bounds, the text itself, ordered and disjoint per level."""
    for level in ("clause", "phrase"):
        spans = explanation.of_level(level)
        for span in spans:
            assert 0 <= span.start < span.end <= len(text)
            assert text[span.start : span.end] == span.text
            assert math.isfinite(span.score) and -1.0 <= span.score <= 1.0
        for before, after in zip(spans, spans[1:], strict=False):
            assert before.end <= after.start
    assert {s.level for s in explanation.spans} <= {"clause", "phrase"}


# -- clauses ------------------------------------------------------------------------------


def test_clauses_cut_at_punctuation_and_contrast_words() -> None:
    text = "位置很方便，但是房间隔音太差了。早餐不错不过有点贵!"
    assert [text[a:b] for a, b in clauses(text)] == [
        "位置很方便",
        "房间隔音太差了",
        "早餐不错",
        "有点贵",
    ]


def test_a_contrast_word_with_little_after_it_stays() -> None:
    assert [("不过如此"[a:b]) for a, b in clauses("不过如此")] == ["不过如此"]


def test_offsets_count_code_points_past_astral_characters() -> None:
    text = "😀𠀀好极了，太差了"
    spans = clauses(text)
    assert [text[a:b] for a, b in spans] == ["😀𠀀好极了", "太差了"]
    assert spans[1][0] == 6  # 😀 and 𠀀 are one code point each


def test_decimal_points_and_latin_spaces_do_not_cut() -> None:
    text = "价格3.5元 good value. 服务 很好"
    assert [text[a:b] for a, b in clauses(text)] == ["价格3.5元 good value", "服务", "很好"]


def test_many_clauses_are_merged_into_a_bounded_number() -> None:
    text = "好，" * 5000
    spans = clauses(text)
    assert 1 < len(spans) <= MAX_CLAUSES
    assert spans[0][0] == 0 and spans[-1][1] == len(text) - 1


def test_phrase_windows_stay_inside_their_clause() -> None:
    text = "房间隔音太差了"
    for dense in (False, True):
        found = phrase_candidates(text, 0, len(text), dense)
        assert found and all(0 <= a < b <= len(text) for a, b in found)
    assert phrase_candidates("很好", 0, 2, False) == []


@given(st.text(max_size=300))
def test_clauses_hold_for_any_text(text: str) -> None:
    spans = clauses(text)
    assert len(spans) <= MAX_CLAUSES
    for a, b in spans:
        assert 0 <= a < b <= len(text) and text[a:b].strip() == text[a:b]
    assert all(x[1] <= y[0] for x, y in zip(spans, spans[1:], strict=False))


# -- scores and mixed -------------------------------------------------------------------


def test_relative_scores_are_zero_at_the_baseline_and_keep_the_ends() -> None:
    out = relative(np.array([-1.0, -0.5, 0.0, 1.0]), -0.5)
    assert out.tolist() == pytest.approx([-1.0, 0.0, 1 / 3, 1.0])


def clause(text: str, score: float) -> Span:
    return Span(0, len(text), text, score, "clause")


def test_mixed_needs_strong_support_on_both_sides() -> None:
    assert is_mixed([clause("位置很好", 0.8), clause("隔音太差", -0.9)])
    assert not is_mixed([clause("位置很好", 0.8), clause("隔音一般", -0.1)])
    assert not is_mixed([clause("位置很好", 0.8), clause("早餐很好", 0.9)])
    assert not is_mixed([])


def test_numbers_emoji_and_single_characters_never_make_a_review_mixed() -> None:
    for odd in ("1", "😀😀", "哇", "2."):
        assert not is_mixed([clause("位置很好", 0.8), clause(odd, -0.9)])


# -- every kind of bundle -------------------------------------------------------------------


def test_tiny_transformer_explains_a_mixed_review(tiny: qinggan.Classifier) -> None:
    prediction = tiny.predict([MIXED], explain=True)[0]
    explanation = prediction.explanation
    assert explanation is not None
    check_spans(MIXED, explanation)
    good, bad = explanation.of_level("clause")
    assert (good.text, bad.text) == ("服务很好", "房间太差了")
    assert good.score > 0 > bad.score
    assert explanation.method == "clause-alone"
    assert explanation.strongest(+1) is not None and "好" in explanation.strongest(+1).text
    assert explanation.strongest(-1) is not None and "差" in explanation.strongest(-1).text


def test_without_explain_the_answer_is_as_before(tiny: qinggan.Classifier) -> None:
    plain = tiny.predict([MIXED])[0]
    assert plain.explanation is None and "explanation" not in plain.to_dict()
    explained = tiny.predict([MIXED], explain=True)[0]
    assert explained.scores == plain.scores
    assert explained.to_dict()["explanation"]["spans"][0]["text"] == "服务很好"


def test_ngram_scores_are_exactly_the_models_own() -> None:
    clf = qinggan.load("ngram")
    linear = LinearNgram.of(clf)
    assert linear is not None
    text = "房间舒适，环境不错，好好好好好，离火车站近 ＡＢＣ abc"
    spans = [(0, 4), (5, 9), (10, 15), (0, len(text)), (3, 3), (16, 22)]
    expected = [clf.predict([text[a:b]])[0].scores["Positive"] for a, b in spans]
    assert linear.prepare(text).probabilities(spans)[:, 1] == pytest.approx(expected, abs=1e-5)


def test_ngram_bundle_explains_with_exact_scores() -> None:
    clf = builtin("ngram")
    explanation = clf.predict([MIXED], explain=True)[0].explanation
    assert explanation is not None and explanation.method == "ngram-exact"
    check_spans(MIXED, explanation)
    assert explanation.mixed


def test_weighted_ensemble_combines_members_by_weight(tmp_path: Path) -> None:
    make_tiny_bundle(tmp_path / "a")
    make_tiny_bundle(tmp_path / "b", seed=1)
    root = write_bundle(
        tmp_path,
        name="tiny-ensemble",
        labels=["Negative", "Positive"],
        models={},
        max_length=64,
        members=[{"path": "a", "weight": 1.0}, {"path": "b", "weight": 3.0}],
    ).path
    ens = qinggan.load(root)
    a, b = (qinggan.load(root / name) for name in ("a", "b"))
    explanation = ens.predict([MIXED], explain=True)[0].explanation
    assert explanation is not None
    assert explanation.method == "weighted(clause-alone*0.25+clause-alone*0.75)"
    # the ensemble's clause score is its reading of the clause: the weighted average
    clause = explanation.of_level("clause")[0].text
    pa, pb = a.predict([clause])[0], b.predict([clause])[0]
    p = 0.25 * pa.scores["Positive"] + 0.75 * pb.scores["Positive"]
    e0 = 0.25 * a.predict([""])[0].scores["Positive"] + 0.75 * b.predict([""])[0].scores["Positive"]
    expected = relative(np.array([2 * p - 1]), 2 * e0 - 1)[0]
    assert explanation.of_level("clause")[0].score == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    ("confidence", "method"),
    [(0.5, "cascade-gate(clause-alone)"), (1.0, "weighted(clause-alone*0.25+clause-alone*0.75)")],
)
def test_cascade_explains_with_the_members_that_answered(
    tmp_path: Path, confidence: float, method: str
) -> None:
    cascade = qinggan.load(make_cascade(tmp_path / "c", confidence).path)
    explanation = cascade.predict([MIXED], explain=True)[0].explanation
    assert explanation is not None and explanation.method == method
    check_spans(MIXED, explanation)


@pytest.mark.parametrize("name", ["fast", "accurate"])
def test_builtin_ensembles_find_both_sides(name: str) -> None:
    clf = qinggan.load(name)
    text = "位置很方便，但是房间隔音太差了"
    explanation = clf.predict([text], explain=True)[0].explanation
    assert explanation is not None
    check_spans(text, explanation)
    good, bad = explanation.of_level("clause")
    assert good.score > 0 > bad.score and explanation.mixed
    assert "差" in explanation.strongest(-1).text


# -- stability and bad input ------------------------------------------------------------------


def test_explanations_do_not_depend_on_batch_mates() -> None:
    clf = qinggan.load("accurate")  # its transformer is dynamic int8
    text = "位置很方便，但是房间隔音太差了，早餐一般"
    alone = clf.predict([text], explain=True)[0].explanation
    others = ["好" * n for n in (3, 60, 200)] + ["质量太差了，再也不买"] * 5
    for batch in ([text, *others], [*others, text, text]):
        for prediction, t in zip(clf.predict(batch, explain=True), batch, strict=True):
            if t == text:
                got = prediction.explanation
                assert got is not None and alone is not None
                assert [(s.start, s.end, s.level) for s in got.spans] == [
                    (s.start, s.end, s.level) for s in alone.spans
                ]
                for x, y in zip(got.spans, alone.spans, strict=True):
                    assert x.score == pytest.approx(y.score, abs=1e-6)


@pytest.mark.parametrize(
    "text", ODD_TEXTS, ids=["empty", "blank", "emoji", "one", "latin", "100k", "mixed-script"]
)
def test_odd_texts_get_sensible_spans(tiny: qinggan.Classifier, text: str) -> None:
    explanation = explain_texts(tiny, [text])[0]
    check_spans(text, explanation)
    if not text.strip():
        assert explanation.spans == () and not explanation.mixed
    else:
        assert explanation.of_level("clause")
    assert len(explanation.of_level("clause")) <= MAX_CLAUSES


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.text(alphabet=st.sampled_from(list("好差很服务房间，。!?但是不过 😀𠀀aZ\n")), max_size=80)
)
def test_span_properties_hold_for_any_text(tiny: qinggan.Classifier, text: str) -> None:
    check_spans(text, explainer_for(tiny).explain(text))


@functools.cache
def builtin(name: str) -> qinggan.engine.Predictor:
    return qinggan.load(name)


@settings(max_examples=40, deadline=None)
@given(st.text(max_size=60))
def test_ngram_span_properties_hold_for_any_text(text: str) -> None:
    check_spans(text, explainer_for(builtin("ngram")).explain(text))


# -- converted checkpoints ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch")
    from qinggan.convert import convert_checkpoint, make_random_checkpoint

    root = tmp_path_factory.mktemp("converted")
    src = make_random_checkpoint(root / "src", "hf")
    return convert_checkpoint(src, root / "bundle", max_length=64, force_int8=True).bundle.path


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_converted_checkpoints_explain_stably(converted: Path, variant: str) -> None:
    clf = qinggan.load(converted, variant=variant)
    text = "位置很方便，但是房间隔音太差了。😀 早餐一般"
    alone = clf.predict([text], explain=True)[0].explanation
    assert alone is not None and alone.method == "clause-alone"
    check_spans(text, alone)
    assert len(alone.of_level("clause")) == 3
    batch = ["好" * 50, text, "质量太差了，再也不买" * 3]
    again = clf.predict(batch, explain=True)[1].explanation
    assert again is not None
    assert [s.text for s in again.spans] == [s.text for s in alone.spans]
    assert [s.score for s in again.spans] == pytest.approx([s.score for s in alone.spans], abs=1e-6)


def test_explaining_imports_nothing_heavy() -> None:
    """The serving install has no torch, onnx, sklearn...: explaining must not need them."""
    code = (
        "import sys, qinggan, qinggan.server\n"
        "clf = qinggan.load('fast')\n"
        "assert clf.predict(['位置很方便，但是房间隔音太差了'], explain=True)[0].explanation\n"
        "heavy = ('torch', 'transformers', 'sklearn', 'onnx', 'ray', 'matplotlib')\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in heavy\n"
        "       or m.startswith(('qinggan.train', 'qinggan.convert'))]\n"
        "print(','.join(sorted(bad)))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == ""


class ThreeLabels:
    """A fake model with a neutral class: 好 reads Positive, 差 Negative, the rest Neutral."""

    labels = ("Negative", "Neutral", "Positive")
    display_labels = ("负面", "中性", "正面")
    max_length = 64
    name = "three"

    def tokenize(self, texts: list[str]) -> list[str]:
        return list(texts)

    def infer(self, batch: list[str]) -> np.ndarray:
        rows = []
        for text in batch:
            good, bad = text.count("好"), text.count("差")
            logits = np.array([4.0 * bad, 1.0, 4.0 * good])
            rows.append(np.exp(logits) / np.exp(logits).sum())
        return np.array(rows)


def test_a_neutral_class_pulls_scores_to_zero() -> None:
    assert polarity_columns(ThreeLabels.labels) == (2, 0)
    explanation = Explainer(ThreeLabels()).explain("服务很好，房间一般，早餐太差")
    good, plain, bad = explanation.of_level("clause")
    assert good.score > 0.5 and bad.score < -0.5 and plain.score == pytest.approx(0.0)
    assert explanation.mixed
