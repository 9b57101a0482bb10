"""Choosing among candidates: the best held-out accuracy (out-of-fold training rows plus
validation rows; ties: the lower log-loss), among those that keep the general model.

With replayed data (``--data-dir``) every candidate is also scored on a sample of the
built-ins' ``dev`` splits (the guard). One whose loss there against the base is both larger
than :data:`MAX_GENERAL_DROP` and larger than the guard's sampling noise allows (a one-sided
95% margin on the paired difference, :func:`guard_margin`) is set aside, so adapting to a
domain does not cost the reviews it knew, and a noisy guard does not veto a good candidate.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .methods import Candidate

MAX_GENERAL_DROP = 0.005
GUARD_Z = 1.645  # one-sided 95%


def guard_margin(cand_ok: np.ndarray, base_ok: np.ndarray) -> float:
    """The drop on the guard that noise alone explains: ``GUARD_Z`` standard errors of the
    paired difference in accuracy (rows where exactly one of the two is right), never below
    :data:`MAX_GENERAL_DROP`."""
    diff = cand_ok.astype(float) - base_ok.astype(float)
    if diff.size < 2:
        return MAX_GENERAL_DROP
    se = float(diff.std(ddof=1)) / float(np.sqrt(diff.size))
    return max(MAX_GENERAL_DROP, GUARD_Z * se)


def choose(
    found: Sequence[Candidate],
    guard_labels: np.ndarray | None = None,
    guard_base: np.ndarray | None = None,
) -> tuple[Candidate, list[Candidate]]:
    """The chosen candidate and the others (each with ``guard_accuracy`` filled in when a
    guard set is given). ``guard_base``: the base's probabilities on the guard set."""
    if not found:
        raise ValueError("no candidates to choose from")
    eligible = list(found)
    if guard_labels is not None and guard_base is not None:
        base_ok = guard_base.argmax(axis=1) == guard_labels
        floor = float(base_ok.mean())
        keeps = []
        for cand in found:
            ok = cand.probs("guard").argmax(axis=1) == guard_labels
            cand.guard_accuracy = float(ok.mean())
            if cand.guard_accuracy >= floor - guard_margin(ok, base_ok):
                keeps.append(cand)
        eligible = keeps or [max(found, key=lambda c: c.guard_accuracy or 0.0)]
    best = max(eligible, key=lambda c: (c.val_accuracy, -c.val_nll))
    return best, [c for c in found if c is not best]
