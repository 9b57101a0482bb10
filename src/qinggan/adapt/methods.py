"""The adaptation methods: new members fitted on the user's rows, and the blends tried.

Two new members, both fitted in seconds on the user's training rows plus a replayed sample
of the built-ins' own training data (so the general model is not forgotten):

- ``head``: a logistic-regression head on the encoder's pooled features (forward passes
  only; :mod:`.features` writes it into the encoder's graph in place of the old head);
- ``ngram``: the character n-gram model re-fitted (:mod:`.ngram`).

Each candidate is a weighted average of two members (new or the base's own) with weights
on a grid and a temperature fitted on held-out probabilities: the validation rows plus
out-of-fold probabilities of every training row (:func:`qinggan.train.blend.choose_blend`);
:mod:`.select` picks one. Measured on the conversation domain (docs/adapt.md):
the head alone gains ~3 points, the n-gram alone ~2, the two blended ~6.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..ensemble import mix, sharpen
from ..errors import MissingExtraError

HEAD_C = 0.05  # strong regularisation: the features are good, the user's rows few
NGRAM_C = 8.0
HEAD_REPLAY_SHARE = 1.0  # replayed rows weigh this much in total, relative to the user's
NGRAM_REPLAY_SHARE = 1.5
BLEND_STEP = 0.05
OOF_FOLDS = 5  # out-of-fold probabilities of the training rows: blends see them all


@dataclass
class Head:
    """A linear head on pooled features: ``logits = features @ weight + bias``."""

    weight: np.ndarray  # [dim, labels]
    bias: np.ndarray  # [labels]

    def logits(self, features: np.ndarray) -> np.ndarray:
        logits: np.ndarray = features.astype(np.float64) @ self.weight + self.bias
        return logits


@dataclass
class Member:
    """One member a candidate can use, with its probabilities on the rows we score."""

    kind: str  # "base-encoder", "base-ngram", "head", "ngram"
    probs: dict[str, np.ndarray]  # "val", "guard", "oof" (training rows) -> [n, labels]
    fitted: Any = None  # Head or NgramFit for new members


@dataclass
class Candidate:
    """A blend of members, its weights and temperature, and how it does on validation."""

    method: str
    members: tuple[Member, ...]
    weights: tuple[float, ...]
    temperature: float
    val_accuracy: float  # held out: out-of-fold training rows plus the validation rows
    val_nll: float
    guard_accuracy: float | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    def probs(self, part: str) -> np.ndarray:
        return sharpen(
            mix([m.probs[part] for m in self.members], np.array(self.weights)), self.temperature
        )

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "method": self.method,
            "members": [m.kind for m in self.members],
            "weights": list(self.weights),
            "temperature": self.temperature,
            "held_out_accuracy": round(self.val_accuracy, 4),
            "held_out_nll": round(self.val_nll, 4),
        }
        if self.guard_accuracy is not None:
            out["replay_dev_accuracy"] = round(self.guard_accuracy, 4)
        if "guard_penalty" in self.notes:
            out["guard_penalty"] = self.notes["guard_penalty"]
        return out


def replay_weights(n_user: int, n_replay: int, share: float) -> np.ndarray:
    """Sample weights: 1 per user row; replayed rows share ``share * n_user`` in total."""
    each = share * n_user / n_replay if n_replay else 0.0
    return np.concatenate([np.ones(n_user), np.full(n_replay, each)])


def fit_head(
    features: np.ndarray, labels: np.ndarray, weights: np.ndarray, n_labels: int, seed: int
) -> Head:
    """A standardised, L2-regularised logistic regression folded into one linear layer."""
    try:
        from sklearn.linear_model import LogisticRegression
    except ImportError:
        raise MissingExtraError("qinggan adapt", "adapt", "scikit-learn") from None
    x = features.astype(np.float64)
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    clf = LogisticRegression(C=HEAD_C, max_iter=3000, random_state=seed)
    clf.fit((x - mean) / scale, labels, sample_weight=weights)
    coef, intercept = clf.coef_, clf.intercept_
    if coef.shape[0] == 1:  # binary: one logit z -> (0, z)
        coef = np.vstack([np.zeros_like(coef), coef])
        intercept = np.array([0.0, float(intercept[0])])
    weight = np.zeros((x.shape[1], n_labels))
    bias = np.full(n_labels, -30.0)  # a label absent from the fit is never chosen
    classes = clf.classes_ if len(clf.classes_) > 2 else np.arange(2)
    for row, cls in enumerate(classes):
        weight[:, int(cls)] = coef[row] / scale
        bias[int(cls)] = intercept[row] - float(np.sum(coef[row] * mean / scale))
    return Head(weight, bias)


def blend(
    method: str, members: Sequence[Member], train_labels: np.ndarray, val_labels: np.ndarray
) -> Candidate:
    """The weighting of ``members`` and the temperature with the best held-out accuracy:
    out-of-fold on the training rows plus the validation rows."""
    from ..train.blend import choose_blend

    labels = np.concatenate([train_labels, val_labels])
    held = [np.concatenate([m.probs["oof"], m.probs["val"]]) for m in members]
    chosen = choose_blend(held, labels, BLEND_STEP)
    kept = [(m, w) for m, w in zip(members, chosen.weights, strict=True) if w > 0]
    return Candidate(
        method=method,
        members=tuple(m for m, _ in kept),
        weights=tuple(w for _, w in kept),
        temperature=chosen.temperature,
        val_accuracy=chosen.dev_accuracy,
        val_nll=chosen.dev_nll,
    )


def candidates(
    base: dict[str, Member],
    new: dict[str, Member],
    train_labels: np.ndarray,
    val_labels: np.ndarray,
) -> list[Candidate]:
    """Every blend worth trying: the base re-weighted, each new member with the base's other
    member, and the two new members together."""
    plans = [
        ("recalibrate", ("base-encoder", "base-ngram")),
        ("ngram", ("base-encoder", "ngram")),
        ("head", ("head", "base-ngram")),
        ("head+ngram", ("head", "ngram")),
    ]
    pool = {**base, **new}
    out = []
    for method, kinds in plans:
        members = [pool[k] for k in kinds if k in pool]
        if not any(k in new for k in kinds) and method != "recalibrate":
            continue
        if members:
            out.append(blend(method, members, train_labels, val_labels))
    return out
