"""Span scorers: the probabilities a model gives each span of a text read on its own.

A scorer opens a *session* per text (``scorer.session(text)``) and answers
``session.probabilities(spans)`` as often as the explainer asks. The rows that explain a
text always run in batches of their own: with dynamic int8 quantisation a row's answer
depends on its batch-mates, and this keeps an explanation the same whether its text came
alone or in a batch of 64. The n-gram scorer tokenises and looks its text up once per
session, so every further span costs a few array operations.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from ..engine import Classifier, Predictor
from ..ensemble import Ensemble, mix, sharpen
from ..interface import Model
from .ngram import LinearNgram

Spans = Sequence[tuple[int, int]]


class Session(Protocol):
    def probabilities(self, spans: Spans) -> np.ndarray:
        """Probabilities of each span of the text read alone, shape (len(spans), labels)."""
        ...


class SpanScorer(Protocol):
    method: str
    cheap: bool  # a span costs next to nothing: search phrases densely

    def session(self, text: str) -> Session: ...


class EngineSession:
    def __init__(self, model: Model, text: str) -> None:
        self.model = model
        self.text = text

    def probabilities(self, spans: Spans) -> np.ndarray:
        rows = [self.text[a:b] for a, b in spans]
        encoded = self.model.tokenize(rows)
        if isinstance(self.model, Predictor):
            return np.asarray(self.model.probabilities(encoded), dtype=np.float64)
        return np.asarray(self.model.infer(encoded), dtype=np.float64)


class EngineScorer:
    """Any model: the spans' texts go through the model as one planned set of rows."""

    method = "clause-alone"
    cheap = False

    def __init__(self, model: Model) -> None:
        self.model = model

    def session(self, text: str) -> Session:
        return EngineSession(self.model, text)


class NgramScorer:
    """The n-gram model's exact answers, computed from its weights (:mod:`.ngram`)."""

    method = LinearNgram.method
    cheap = True

    def __init__(self, linear: LinearNgram) -> None:
        self.linear = linear

    def session(self, text: str) -> Session:
        return self.linear.prepare(text)


class WeightedSession:
    def __init__(self, scorer: WeightedScorer, parts: list[Session]) -> None:
        self.scorer = scorer
        self.parts = parts

    def probabilities(self, spans: Spans) -> np.ndarray:
        probs = [part.probabilities(spans) for part in self.parts]
        return sharpen(mix(probs, self.scorer.weights), self.scorer.temperature)


class WeightedScorer:
    """An ensemble: members' span probabilities averaged with its weights and sharpened
    with its temperature, as the ensemble combines whole texts."""

    def __init__(self, members: list[SpanScorer], weights: np.ndarray, temperature: float):
        self.members = members
        self.weights = weights
        self.temperature = temperature
        self.cheap = all(m.cheap for m in members)
        parts = [f"{m.method}*{w:.2f}" for m, w in zip(members, weights, strict=True)]
        self.method = "weighted(" + "+".join(parts) + ")"

    def session(self, text: str, known: dict[int, Session] | None = None) -> Session:
        """A session per member (reusing ``known`` ones, by member index)."""
        known = known or {}
        parts = [known.get(i) or m.session(text) for i, m in enumerate(self.members)]
        return WeightedSession(self, parts)


def member_scorer(model: Any) -> SpanScorer:
    """The cheapest exact scorer for one model (never an ensemble)."""
    if isinstance(model, Classifier):
        linear = LinearNgram.of(model)
        if linear is not None:
            return NgramScorer(linear)
    return EngineScorer(model)


def scorers_for(model: Any) -> tuple[SpanScorer, int | None, float]:
    """(scorer for texts every member reads, the gate member's index or None, gate
    confidence). A cascade's texts that its gate member answered alone are explained by
    that member alone: the others never saw them."""
    if not isinstance(model, Ensemble):
        return member_scorer(model), None, 1.0
    members = [member_scorer(m) for m in model.members]
    weighted = WeightedScorer(members, model.weights, model._temperature)
    if model.gate is None:
        return weighted, None, 1.0
    index, confidence = model.gate
    return weighted, index, confidence
