"""Choosing among candidates: the best held-out accuracy (out-of-fold training rows plus
validation rows; ties: the lower log-loss), less a penalty for what it costs the general model.

With replayed data (``--data-dir``) every candidate is also scored on a sample of the
built-ins' ``dev`` splits (the guard). Its loss there against the base, beyond
:data:`MAX_GENERAL_DROP` or the guard's sampling noise (a one-sided 95% margin on the paired
difference, :func:`guard_margin`), whichever is larger, is subtracted from its held-out
accuracy: a candidate that forgets the reviews loses the choice, and a noisy guard does not
veto one that is clearly better on the user's domain (a hard filter did, measured in
``docs/adapt.md``).
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
    """The chosen candidate and the others (each with ``guard_accuracy`` and the penalty in
    ``notes`` filled in when a guard set is given). ``guard_base``: the base's probabilities
    on the guard set."""
    if not found:
        raise ValueError("no candidates to choose from")
    eligible = list(found)
    if guard_labels is not None and guard_base is not None:
        base_ok = guard_base.argmax(axis=1) == guard_labels
        floor = float(base_ok.mean())
        for cand in found:
            ok = cand.probs("guard").argmax(axis=1) == guard_labels
            cand.guard_accuracy = float(ok.mean())
            excess = floor - cand.guard_accuracy - guard_margin(ok, base_ok)
            cand.notes["guard_penalty"] = round(max(0.0, excess), 4)
    best = max(
        eligible,
        key=lambda c: (c.val_accuracy - c.notes.get("guard_penalty", 0.0), -c.val_nll),
    )
    return best, [c for c in found if c is not best]
