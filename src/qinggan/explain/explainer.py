"""Explaining one text: score its clauses, then look for the strongest phrase inside the
clauses that matter, with at most two batches of rows per model.

A span's score is how the model reads the span on its own, against how it reads an empty
text. With ``polarity = P(Positive) - P(Negative)`` (in [-1, 1]) and ``b`` the polarity of
"", the score is ``(polarity - b) / (1 - b)`` above ``b`` and ``(polarity - b) / (1 + b)``
below: 0 for a span the model finds as neutral as nothing, +1 and -1 at certainty, whatever
the model's prior (the built-in models read "" as 77-81% negative). Reading clauses alone
costs about one pass over the text (the clauses together are the text), where deleting
each clause in turn costs one pass per clause; phrases are windows of a few characters
inside the strongest positive and the strongest negative clause.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

import numpy as np

from .clauses import clauses, phrase_candidates
from .mixed import PHRASE_SLACK, PHRASE_SUPPORT, is_mixed
from .scorers import Session, SpanScorer, WeightedScorer, scorers_for
from .types import Explanation, Span


def polarity_columns(labels: tuple[str, ...]) -> tuple[int, int]:
    """(positive, negative) label indexes; without those names the last and first label."""
    lower = [label.lower() for label in labels]
    positive = lower.index("positive") if "positive" in lower else len(labels) - 1
    negative = lower.index("negative") if "negative" in lower else 0
    return positive, negative


class Explainer:
    """Explanations for one loaded model (built once per model, thread-safe)."""

    def __init__(self, model: Any) -> None:
        self.scorer, self.gate, self.gate_confidence = scorers_for(model)
        self.positive, self.negative = polarity_columns(tuple(model.labels))
        self._baselines: dict[int, float] = {}

    def polarity(self, probs: np.ndarray) -> np.ndarray:
        out: np.ndarray = probs[:, self.positive] - probs[:, self.negative]
        return out

    def _baseline(self, scorer: SpanScorer) -> float:
        key = id(scorer)
        if key not in self._baselines:
            probs = scorer.session("").probabilities([(0, 0)])
            self._baselines[key] = float(self.polarity(probs)[0])
        return self._baselines[key]

    def scores(self, session: Session, baseline: float, spans: list[tuple[int, int]]) -> np.ndarray:
        if not spans:
            return np.zeros(0)
        return relative(self.polarity(session.probabilities(spans)), baseline)

    def open(self, text: str) -> tuple[SpanScorer, Session, str]:
        """The scorer that stands for how this text was answered (a cascade's gate member
        alone when it was sure of the whole text), with a session on the text."""
        scorer = self.scorer
        if self.gate is not None and isinstance(scorer, WeightedScorer):
            gate = scorer.members[self.gate]
            gate_session = gate.session(text)
            whole = gate_session.probabilities([(0, len(text))])
            if float(whole.max()) >= self.gate_confidence:
                return gate, gate_session, f"cascade-gate({gate.method})"
            return scorer, scorer.session(text, {self.gate: gate_session}), scorer.method
        return scorer, scorer.session(text), scorer.method

    def explain(self, text: str) -> Explanation:
        cuts = clauses(text)
        if not cuts:
            return Explanation(method=self.scorer.method, mixed=False)
        scorer, session, method = self.open(text)
        baseline = self._baseline(scorer)
        clause_scores = self.scores(session, baseline, cuts)
        spans = [
            Span(a, b, text[a:b], float(s), "clause")
            for (a, b), s in zip(cuts, clause_scores, strict=True)
        ]
        phrases = self.phrases(scorer.cheap, session, baseline, text, spans)
        return Explanation(method=method, mixed=is_mixed(spans), spans=tuple(spans + phrases))

    def phrases(
        self,
        dense: bool,
        session: Session,
        baseline: float,
        text: str,
        clause_spans: list[Span],
    ) -> list[Span]:
        """The strongest window inside the strongest clause of each sign."""
        picked = []
        for sign in (1, -1):
            best = max(clause_spans, key=lambda s: s.score * sign)
            if best.score * sign >= PHRASE_SUPPORT:
                picked.append((sign, best))
        candidates: list[tuple[int, int]] = []
        owners: list[int] = []
        for number, (_, clause) in enumerate(picked):
            found = phrase_candidates(text, clause.start, clause.end, dense)
            candidates += found
            owners += [number] * len(found)
        window_scores = self.scores(session, baseline, candidates)
        out = []
        for number, (sign, clause) in enumerate(picked):
            mine = [i for i, owner in enumerate(owners) if owner == number]
            if not mine:  # a clause this short is its own phrase
                out.append(Span(clause.start, clause.end, clause.text, clause.score, "phrase"))
                continue
            strongest = max(window_scores[i] * sign for i in mine)
            near = [i for i in mine if window_scores[i] * sign >= strongest - PHRASE_SLACK]
            # among windows about as strong, the longest reads best (态度差 over 度差)
            best_i = max(
                near,
                key=lambda i: (candidates[i][1] - candidates[i][0], window_scores[i] * sign),
            )
            a, b = candidates[best_i]
            out.append(Span(a, b, text[a:b], float(window_scores[best_i]), "phrase"))
        return sorted(out, key=lambda s: s.start)


def relative(polarity: np.ndarray, baseline: float) -> np.ndarray:
    """Polarities in [-1, 1] rescaled so that ``baseline`` maps to 0 and the ends stay put."""
    baseline = min(max(baseline, -0.999), 0.999)
    up = (polarity - baseline) / (1 - baseline)
    down = (polarity - baseline) / (1 + baseline)
    out: np.ndarray = np.clip(np.nan_to_num(np.where(polarity >= baseline, up, down)), -1.0, 1.0)
    return out


_EXPLAINERS: weakref.WeakKeyDictionary[Any, Explainer] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def explainer_for(model: Any) -> Explainer:
    """The model's explainer, built on first use (reading an n-gram model's weights)."""
    with _LOCK:
        found = _EXPLAINERS.get(model)
        if found is None:
            found = _EXPLAINERS[model] = Explainer(model)
        return found
