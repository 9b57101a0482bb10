"""When a review is mixed, and what counts as a span strong enough to show."""

from __future__ import annotations

from collections.abc import Sequence

MIXED_SUPPORT = 0.25  # a clause needs |score| >= this on each side for ``mixed``
PHRASE_SUPPORT = 0.2  # clauses weaker than this get no phrase
PHRASE_SLACK = 0.05  # windows this close to the strongest count as as strong (longest wins)


def is_mixed(clause_scores: Sequence[float], support: float = MIXED_SUPPORT) -> bool:
    """Mixed: at least one clause supports each polarity with a score of ``support`` or more.

    Scores are the clause read alone against the model's reading of an empty text, so a
    clause that merely describes ("我住的是大床房") sits near 0 and cannot make a review mixed.
    """
    return (
        max(clause_scores, default=0.0) >= support and min(clause_scores, default=0.0) <= -support
    )
