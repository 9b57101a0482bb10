"""Explanations: the clauses and phrases behind each answer, and mixed reviews flagged.

``clf.predict(texts, explain=True)`` attaches an :class:`Explanation` to each prediction;
:func:`explain` does the same for predictions already made. See docs/explain.md for the
method and its measured faithfulness.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .explainer import Explainer, explainer_for
from .types import Explanation, Span

if TYPE_CHECKING:
    from ..engine import Prediction

__all__ = ["Explainer", "Explanation", "Span", "explain", "explain_texts", "explainer_for"]


def explain_texts(model: Any, texts: Sequence[str]) -> list[Explanation]:
    """One explanation per text; each text's rows run in batches of their own."""
    explainer = explainer_for(model)
    return [explainer.explain(text) for text in texts]


def explain(
    model: Any, texts: Sequence[str], predictions: Sequence[Prediction]
) -> list[Prediction]:
    """``predictions`` (of ``texts``, by ``model``) with their explanations attached."""
    return [
        dataclasses.replace(p, explanation=e)
        for p, e in zip(predictions, explain_texts(model, texts), strict=True)
    ]
