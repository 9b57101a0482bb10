"""How ``qinggan adapt`` chooses: the guard sets aside a candidate that loses the reviews, by
more than the guard's sampling noise explains."""

from __future__ import annotations

import numpy as np

from qinggan.adapt.methods import Candidate, Member
from qinggan.adapt.select import MAX_GENERAL_DROP, choose, guard_margin


def probs_from(correct: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Two-label probabilities that are right exactly where ``correct`` is."""
    predicted = np.where(correct, labels, 1 - labels)
    out = np.full((labels.size, 2), 0.2)
    out[np.arange(labels.size), predicted] = 0.8
    return out


def candidate(name: str, ok: np.ndarray, labels: np.ndarray, val: float) -> Candidate:
    member = Member(name, {"guard": probs_from(ok, labels)})
    return Candidate(name, (member,), (1.0,), 1.0, val_accuracy=val, val_nll=0.3)


def test_guard_margin_grows_with_noise_and_shrinks_with_rows() -> None:
    rng = np.random.default_rng(0)
    base = rng.random(600) < 0.93
    cand = base.copy()
    flip = rng.choice(600, 60, replace=False)
    cand[flip] = ~cand[flip]
    small = guard_margin(cand, base)
    big = guard_margin(np.tile(cand, 4), np.tile(base, 4))
    assert small > big > MAX_GENERAL_DROP
    assert guard_margin(base, base) == MAX_GENERAL_DROP


def test_choose_keeps_a_candidate_whose_drop_is_noise_and_drops_a_real_loss() -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 2000)
    base_ok = rng.random(2000) < 0.93
    noisy_ok = base_ok.copy()  # 100 rows change, 0.7 points lost: within the noise
    noisy_ok[np.flatnonzero(base_ok)[:57]] = False
    noisy_ok[np.flatnonzero(~base_ok)[:43]] = True
    assert base_ok.mean() - noisy_ok.mean() > MAX_GENERAL_DROP
    lost_ok = base_ok & (rng.random(2000) < 0.9)  # ten points lost
    base = probs_from(base_ok, labels)
    noisy = candidate("noisy", noisy_ok, labels, val=0.88)
    lost = candidate("lost", lost_ok, labels, val=0.95)
    keep = candidate("base", base_ok, labels, val=0.82)
    chosen, others = choose([noisy, lost, keep], labels, base)
    assert chosen is noisy
    assert {c.method for c in others} == {"lost", "base"}
    assert lost.guard_accuracy is not None and lost.guard_accuracy < 0.86


def test_a_small_guard_loss_costs_its_excess_not_the_choice() -> None:
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 2000)
    base_ok = rng.random(2000) < 0.93
    slight_ok = base_ok.copy()  # 2 points lost on the guard: beyond the noise, by a little
    slight_ok[np.flatnonzero(base_ok)[:40]] = False
    better = candidate("better", slight_ok, labels, val=0.90)
    plain = candidate("plain", base_ok, labels, val=0.85)
    chosen, _ = choose([better, plain], labels, probs_from(base_ok, labels))
    assert chosen is better
    assert 0 < better.notes["guard_penalty"] < 0.05
    assert plain.notes["guard_penalty"] == 0
