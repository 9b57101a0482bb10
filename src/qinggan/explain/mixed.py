"""When a review is mixed, and what counts as a span strong enough to show."""

from __future__ import annotations

from collections.abc import Sequence

from .types import Span

MIXED_SUPPORT = 0.6  # a clause needs |score| >= this on each side for ``mixed`` (dev sweep)
MIN_WORD_CHARS = 2  # clauses with fewer letters ("1", "😀", "哇") never make a review mixed
PHRASE_SUPPORT = 0.2  # clauses weaker than this get no phrase
PHRASE_SLACK = 0.05  # windows this close to the strongest count as as strong (longest wins)


def is_mixed(spans: Sequence[Span], support: float = MIXED_SUPPORT) -> bool:
    """Mixed: at least one clause supports each polarity with a score of ``support`` or more.

    Scores are the clause read alone against the model's reading of an empty text, so a
    clause that merely describes ("我住的是大床房") sits near 0; list numbers, emoji and
    one-character exclamations are left out, as models read them erratically.
    """
    scores = [
        s.score
        for s in spans
        if s.level == "clause"
        and abs(s.score) >= support
        and sum(c.isalpha() for c in s.text) >= MIN_WORD_CHARS
    ]
    return max(scores, default=0.0) >= support and min(scores, default=0.0) <= -support
