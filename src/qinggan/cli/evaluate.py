"""``qinggan eval``: accuracy and calibration on labelled data."""

from __future__ import annotations

from typing import Annotated

import typer

from .app import LongTextsOption, ThreadsOption, VariantOption, app


@app.command(name="eval")
def evaluate_command(
    model: Annotated[str, typer.Argument(help="Bundle directory or built-in model name.")],
    data: Annotated[
        list[str],
        typer.Argument(
            help="CSV/JSONL files (text,label; .gz ok) or a data directory (its */test.csv.gz)."
        ),
    ],
    baseline: Annotated[
        str | None, typer.Option("--baseline", help="Also score a baseline: snownlp.")
    ] = None,
    json_out: Annotated[
        str | None, typer.Option("--json", help="Write the report as JSON.")
    ] = None,
    markdown_out: Annotated[
        str | None, typer.Option("--markdown", help="Write a Markdown report.")
    ] = None,
    plot: Annotated[
        str | None, typer.Option("--plot", help="Reliability diagram PNG (needs matplotlib).")
    ] = None,
    variant: VariantOption = None,
    threads: ThreadsOption = None,
    long_texts: LongTextsOption = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Score at most N texts per file.")
    ] = None,
) -> None:
    """Accuracy, macro-F1, confusion matrix and calibration (ECE) of a bundle on labelled data."""
    from ..evaluate import run_eval

    run_eval(
        model, data, baseline=baseline, json_out=json_out, markdown_out=markdown_out,
        plot=plot, variant=variant, threads=threads, limit=limit, long_texts=long_texts,
    )  # fmt: skip
