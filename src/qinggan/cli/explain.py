"""``qinggan predict --explain``: coloured spans on a terminal, JSON in pipes."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Annotated, Any

import typer

from .app import _emit_json

ExplainOption = Annotated[
    bool,
    typer.Option(
        "--explain",
        help="Show the clauses and phrases behind each answer (coloured on a terminal, JSON "
        "otherwise; files get phrase_positive, phrase_negative and mixed columns).",
    ),
]


def print_explained(predictions: Sequence[Any], texts: Sequence[str], as_json: bool) -> None:
    """Each text's answer and explanation: JSON lines unless stdout is a terminal."""
    if as_json or not sys.stdout.isatty():
        for text, pred in zip(texts, predictions, strict=True):
            _emit_json({"text": text, **pred.to_dict()})
        return
    from rich.console import Console

    from ..explain.output import rich_text

    console = Console(highlight=False)
    for text, pred in zip(texts, predictions, strict=True):
        badge = "  [bold magenta]混合 mixed[/]" if pred.explanation.mixed else ""
        console.print(f"{pred.label}\t{pred.confidence:.4f}\t{pred.label_zh}{badge}")
        console.print(rich_text(text, pred.explanation))
