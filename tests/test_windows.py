"""Long texts read whole: windows (splitting, encoding, aggregation) in the engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import qinggan
from qinggan import windows
from qinggan.bundle import Bundle, write_bundle
from qinggan.engine import Classifier
from qinggan.ensemble import Ensemble
from qinggan.errors import TextTooLongError
from qinggan.settings import DEFAULT_LONG_TEXTS, SettingsError
from qinggan.testing import make_tiny_bundle
from qinggan.windows import (
    Windowed,
    clause_starts,
    plan_windows,
    split_text,
    token_boundaries,
)

# A positive opening longer than the tiny model's 64 tokens, and the verdict at the end.
OPENING = "酒店位置很好，服务很好。" * 8
VERDICT = "差差差差差差，失望失望失望！" * 3
LATE_VERDICT = OPENING + VERDICT


@pytest.fixture(scope="module")
def clf(tiny_bundle: Bundle) -> Classifier:
    return qinggan.load(tiny_bundle.path, threads=1, long_texts="window")


@pytest.fixture(scope="module")
def cut(tiny_bundle: Bundle) -> Classifier:
    return qinggan.load(tiny_bundle.path, threads=1, long_texts="truncate")


# -- splitting ----------------------------------------------------------------------------


def test_clause_starts_rank_sentence_ends_above_commas_and_contrast_words() -> None:
    text = "房间很大，早餐一般。但是隔音差"
    starts = clause_starts(text)
    assert starts == {5: 1, 10: 2}  # after ，; after 。 (where 但是 also starts: the stronger)
    assert clause_starts("位置好但隔音差") == {3: 1}
    assert clause_starts("好。") == {}  # nothing starts at either end


def test_cuts_fall_between_tokens_only() -> None:
    offsets = [(0, 1), (1, 2), (2, 4), (4, 5)]
    assert token_boundaries(offsets, {1: 2, 3: 1, 4: 1}) == [0, 2, 0, 1]


def test_windows_end_at_the_latest_sentence_end_in_their_second_half() -> None:
    strength = [0] * 100
    strength[40] = 1
    strength[55] = 2
    strength[58] = 1
    first, *_ = plan_windows(strength, 60)
    assert first == (0, 55)  # a sentence end beats a later comma


def test_text_without_clauses_is_cut_hard_and_still_overlaps() -> None:
    ranges = plan_windows([0] * 100, 40)
    assert ranges[0] == (0, 40) and ranges[1][0] == 30  # a quarter of a window again
    assert ranges[-1] == (60, 100)  # the last window is a full one


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 2), min_size=1, max_size=400),
    st.integers(1, 80),
)
def test_windows_cover_every_token_within_budget(strength: list[int], budget: int) -> None:
    strength[0] = 0
    ranges = plan_windows(strength, budget)
    n = len(strength)
    assert ranges[0][0] == 0 and ranges[-1][1] == n
    for (s1, e1), (s2, e2) in zip(ranges, ranges[1:], strict=False):
        assert s1 < s2 <= e1 < e2  # moving forward, no gap
    assert all(0 < e - s <= budget for s, e in ranges)


def test_split_text_gives_substrings_that_fit_the_model(clf: Classifier) -> None:
    spans = split_text(LATE_VERDICT, clf.encoder)
    assert len(spans) > 1 and spans[0][0] == 0 and spans[-1][1] == len(LATE_VERDICT)
    parts = clf.encoder.encode([LATE_VERDICT[a:b] for a, b in spans])
    assert not any(p.truncated for p in parts)
    assert all(len(p) <= clf.max_length for p in parts)
    assert all(LATE_VERDICT[b - 1] in "。！，" for _, b in spans)  # clause-aligned ends


@settings(max_examples=60, deadline=None)
@given(text=st.text(alphabet="好差很的，。！？ 但是😀𠀀ab\n", min_size=0, max_size=400))
def test_any_text_splits_into_ordered_substrings_that_fit(clf: Classifier, text: str) -> None:
    encoder = clf.encoder
    offsets = encoder.content_offsets(text)
    spans = split_text(text, encoder)
    if len(offsets) <= encoder.max_length - encoder.overhead_tokens - windows.MARGIN_TOKENS:
        assert len(spans) <= 1
    if not spans:
        return
    assert spans[0][0] == offsets[0][0] and spans[-1][1] == offsets[-1][1]
    for (a1, b1), (a2, b2) in zip(spans, spans[1:], strict=False):
        assert a1 < a2 <= b1 < b2
    parts = encoder.encode([text[a:b] for a, b in spans])
    assert not any(p.truncated for p in parts)


def test_prefix_and_special_tokens_are_left_out_of_the_offsets(tmp_path: Path) -> None:
    bundle = make_tiny_bundle(tmp_path / "p")
    write_bundle(
        bundle.path,
        name="tiny-prefix",
        labels=["Negative", "Positive"],
        models={"fp32": "model.onnx"},
        max_length=64,
        text_prefix="a b ",
    )
    model = qinggan.load(bundle.path, long_texts="window")
    assert isinstance(model, Classifier)
    assert model.encoder.content_offsets("好差") == [(0, 1), (1, 2)]
    assert model.encoder.overhead_tokens == 4  # [CLS] a b [SEP]
    (long,) = model.tokenize([LATE_VERDICT])
    assert isinstance(long, Windowed) and not long.truncated


# -- predictions --------------------------------------------------------------------------


def test_a_long_text_is_read_whole(clf: Classifier, cut: Classifier) -> None:
    whole, short = clf.predict([LATE_VERDICT, "很好"])
    (cut_off,) = cut.predict([LATE_VERDICT])
    assert cut_off.truncated and cut_off.windows == 1 and cut_off.label == "Positive"
    assert not whole.truncated and whole.windows > 1 and whole.label == "Negative"
    assert short.windows == 1 and not short.truncated
    assert "windows" not in short.to_dict() and whole.to_dict()["windows"] == whole.windows


def test_short_texts_are_scored_exactly_as_before(clf: Classifier, cut: Classifier) -> None:
    texts = ["很好", "太差了，非常失望", OPENING[:40]]
    assert clf.predict(texts) == cut.predict(texts)


def test_the_aggregation_is_the_most_confident_window() -> None:
    probs = np.array([[0.4, 0.6], [0.95, 0.05], [0.3, 0.7]])
    lengths = np.array([10.0, 10.0, 10.0])
    aggregate = windows.AGGREGATIONS[windows.AGGREGATION]
    assert aggregate(probs, lengths).tolist() == [0.95, 0.05]
    for name, function in windows.AGGREGATIONS.items():
        out = function(probs, lengths)
        assert out.shape == (2,) and out.sum() == pytest.approx(1.0), name


def test_the_server_batch_path_agrees_with_predict(clf: Classifier) -> None:
    texts = ["很好", LATE_VERDICT, "太差", OPENING * 3]
    batch = clf.tokenize(texts)
    assert [isinstance(e, Windowed) for e in batch] == [False, True, False, True]
    assert clf.to_predictions(clf.infer(batch), batch) == clf.predict(texts)


def test_no_truncate_still_rejects_long_texts(tiny_bundle: Bundle) -> None:
    strict = qinggan.load(tiny_bundle.path, truncate=False, long_texts="window")
    with pytest.raises(TextTooLongError):
        strict.predict([LATE_VERDICT])


def test_long_texts_option_and_environment(
    tiny_bundle: Bundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert qinggan.load(tiny_bundle.path).long_texts == DEFAULT_LONG_TEXTS
    monkeypatch.setenv("QINGGAN_LONG_TEXTS", "truncate")
    assert qinggan.load(tiny_bundle.path).long_texts == "truncate"
    assert qinggan.load(tiny_bundle.path, long_texts="window").long_texts == "window"
    assert qinggan.load(tiny_bundle.path).info()["long_texts"] == "truncate"
    monkeypatch.setenv("QINGGAN_LONG_TEXTS", "chunks")
    with pytest.raises(SettingsError, match="QINGGAN_LONG_TEXTS must be one of"):
        qinggan.load(tiny_bundle.path)
    with pytest.raises(SettingsError, match="long_texts must be one of window, truncate"):
        qinggan.load(tiny_bundle.path, long_texts="whole")


# -- memory stays bounded -----------------------------------------------------------------


class _Recorder:
    """Stands in for an ONNX Runtime session and records the shape of every call."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.shapes: list[tuple[int, int]] = []

    def run(self, names: Any, feeds: dict[str, np.ndarray]) -> Any:
        self.shapes.append(feeds["input_ids"].shape)
        return self.session.run(names, feeds)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.session, name)


def test_a_100k_character_text_runs_in_bounded_batches(tiny_bundle: Bundle) -> None:
    model = qinggan.load(tiny_bundle.path, batch_size=8, max_batch_tokens=256)
    assert isinstance(model, Classifier)
    recorder = _Recorder(model.session)
    model.session = recorder  # type: ignore[assignment]
    text = ("房间干净，服务很好。" * 5 + "早餐太差，失望！") * 6700  # ~100,000 characters
    assert len(text) > 100_000
    (prediction,) = model.predict([text])
    assert prediction.windows > 1000 and not prediction.truncated
    rows = [rows for rows, _ in recorder.shapes]
    assert sum(rows) == prediction.windows  # every window scored once
    assert max(rows) <= 8
    assert all(r * w <= 256 or r == 1 for r, w in recorder.shapes)


# -- ensembles: each member windows by its own tokenizer and max_length ----------------------


def _ensemble(root: Path, gate: dict[str, Any] | None = None) -> Path:
    make_tiny_bundle(root / "a", max_length=64)
    make_tiny_bundle(root / "b", max_length=256)
    return write_bundle(
        root,
        name="tiny-ensemble",
        labels=["Negative", "Positive"],
        models={},
        max_length=64,
        members=[{"path": "a", "weight": 1.0}, {"path": "b", "weight": 1.0}],
        **({"gate": gate} if gate else {}),
    ).path


def test_ensemble_members_window_by_their_own_limits(tmp_path: Path) -> None:
    ens = qinggan.load(_ensemble(tmp_path / "e"), long_texts="window")
    assert isinstance(ens, Ensemble)
    text = LATE_VERDICT * 2
    (encoded,) = ens.tokenize([text])
    short_member, long_member = encoded.parts
    assert isinstance(short_member, Windowed) and isinstance(long_member, Windowed)
    assert short_member.windows > long_member.windows
    (prediction,) = ens.predict([text])
    assert prediction.windows == short_member.windows and not prediction.truncated
    a, b = (m.predict([text])[0] for m in ens.members)
    mixed = 0.5 * a.scores["Positive"] + 0.5 * b.scores["Positive"]
    assert prediction.scores["Positive"] == pytest.approx(mixed)


def test_a_cascade_gates_on_the_whole_text(tmp_path: Path) -> None:
    ens = qinggan.load(
        _ensemble(tmp_path / "g", gate={"member": 1, "confidence": 0.5}), long_texts="window"
    )
    text = LATE_VERDICT * 2
    (prediction,) = ens.predict([text])
    (gate_alone,) = ens.members[1].predict([text])
    assert prediction.scores == pytest.approx(gate_alone.scores)  # sure enough: it answers
    batch = ens.tokenize([text, "很好"])
    assert ens.to_predictions(ens.infer(batch), batch) == ens.predict([text, "很好"])
