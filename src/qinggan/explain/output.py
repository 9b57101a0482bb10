"""Explanations outside Python: file-scoring columns and coloured terminal text."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from .types import Explanation

if TYPE_CHECKING:
    from rich.text import Text

COLUMNS = ("phrase_positive", "phrase_negative", "mixed")


def column_fields(prefix: str = "") -> list[pa.Field]:
    """The columns file scoring adds with ``--explain`` (after the prediction columns)."""
    return [
        pa.field(f"{prefix}phrase_positive", pa.string()),
        pa.field(f"{prefix}phrase_negative", pa.string()),
        pa.field(f"{prefix}mixed", pa.bool_()),
    ]


def column_values(explanations: Sequence[Explanation | None]) -> list[list[Any]]:
    """Strongest positive phrase, strongest negative phrase and ``mixed`` per row (null
    where a row has no explanation: an error)."""
    positive, negative, mixed = [], [], []
    for e in explanations:
        pos, neg = (e.strongest(+1), e.strongest(-1)) if e is not None else (None, None)
        positive.append(pos.text if pos else None)
        negative.append(neg.text if neg else None)
        mixed.append(e.mixed if e is not None else None)
    return [positive, negative, mixed]


def rich_text(text: str, explanation: Explanation) -> Text:
    """``text`` with its clauses coloured (green supports Positive, red Negative; deeper
    when stronger) and its strongest phrases in bold and underlined."""
    from rich.style import Style
    from rich.text import Text

    out = Text(text)
    for span in explanation.of_level("clause"):
        out.stylize(Style(color=_colour(span.score)), span.start, span.end)
    for span in explanation.of_level("phrase"):
        out.stylize(Style(bold=True, underline=True), span.start, span.end)
    return out


def _colour(score: float) -> str:
    """An RGB colour from grey (0) to full green (+1) or red (-1)."""
    strength = min(1.0, abs(score))
    grey = 150
    low = int(grey * (1 - strength))
    high = int(grey + (255 - grey) * strength)
    return f"rgb({low},{high},{low})" if score > 0 else f"rgb({high},{low},{low})"
