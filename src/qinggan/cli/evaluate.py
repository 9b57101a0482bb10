"""``qinggan eval``: accuracy and calibration on labelled data."""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from .app import LongTextsOption, ModelOption, ThreadsOption, VariantOption, app, pick_model


@app.command(name="eval")
def evaluate_command(
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="CSV/JSONL files (text,label; .gz ok) or a data directory (its */test.csv.gz); "
            "without -m, the first is the model (qinggan eval fast data/).",
            metavar="[MODEL] DATA...",
        ),
    ],
    model: ModelOption = None,
    baseline: Annotated[
        Literal["snownlp"] | None,
        typer.Option("--baseline", help="Also score a baseline.", case_sensitive=False),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the report as JSON instead of a table.")
    ] = False,
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="Write the report as JSON to this file.")
    ] = None,
    markdown_out: Annotated[
        str | None, typer.Option("--markdown", help="Write a Markdown report to this file.")
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

    name, data = pick_model(model, inputs)
    if not data:
        raise typer.BadParameter("give at least one data file or directory", param_hint="DATA")
    run_eval(
        name, data, baseline=baseline, json_out=output, markdown_out=markdown_out,
        plot=plot, variant=variant, threads=threads, limit=limit, as_json=as_json,
        long_texts=long_texts,
    )  # fmt: skip
