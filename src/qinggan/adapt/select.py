"""Choosing among candidates: the best held-out accuracy (out-of-fold training rows plus
validation rows; ties: the lower log-loss), among those that keep the general model.

With replayed data (``--data-dir``) every candidate is also scored on a sample of the
built-ins' ``dev`` splits; one that loses more than :data:`MAX_GENERAL_DROP` there against
the base is set aside, so adapting to a domain does not cost the reviews it knew.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .methods import Candidate

MAX_GENERAL_DROP = 0.005


def choose(
    found: Sequence[Candidate],
    guard_labels: np.ndarray | None = None,
    guard_floor: float | None = None,
) -> tuple[Candidate, list[Candidate]]:
    """The chosen candidate and the others (each with ``guard_accuracy`` filled in when a
    guard set is given). ``guard_floor``: the base's accuracy on the guard set."""
    if not found:
        raise ValueError("no candidates to choose from")
    eligible = list(found)
    if guard_labels is not None and guard_floor is not None:
        for cand in found:
            cand.guard_accuracy = float((cand.probs("guard").argmax(axis=1) == guard_labels).mean())
        keeps = [c for c in found if c.guard_accuracy >= guard_floor - MAX_GENERAL_DROP]  # type: ignore[operator]
        eligible = keeps or [max(found, key=lambda c: c.guard_accuracy or 0.0)]
    best = max(eligible, key=lambda c: (c.val_accuracy, -c.val_nll))
    return best, [c for c in found if c is not best]
