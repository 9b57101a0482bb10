"""``qinggan adapt``: a model for the user's own domain from their labelled texts."""

from __future__ import annotations

from typing import Annotated

import typer

from ..adapt.config import AdaptOptions
from ..options import help_of
from .app import app


def _help(name: str) -> str:
    return help_of(AdaptOptions, name)


@app.command()
def adapt(
    data: Annotated[str, typer.Argument(help=_help("data"))],
    out: Annotated[str, typer.Option("--out", "-o", help=_help("out"))],
    base: Annotated[str, typer.Option("--base", help=_help("base"))] = "accurate",
    minutes: Annotated[float, typer.Option("--minutes", min=0.1, help=_help("minutes"))] = 10.0,
    seed: Annotated[int, typer.Option("--seed", help=_help("seed"))] = 13,
    val_fraction: Annotated[
        float, typer.Option("--val-fraction", min=0.01, max=0.9, help=_help("val_fraction"))
    ] = 0.2,
    text_column: Annotated[
        str | None, typer.Option("--text-column", help=_help("text_column"))
    ] = None,
    label_column: Annotated[
        str | None, typer.Option("--label-column", help=_help("label_column"))
    ] = None,
    labels: Annotated[str | None, typer.Option("--labels", help=_help("labels"))] = None,
    data_dir: Annotated[str | None, typer.Option("--data-dir", help=_help("data_dir"))] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help=_help("overwrite"))] = False,
    name: Annotated[str | None, typer.Option("--name", help=_help("name"))] = None,
    threads: Annotated[int | None, typer.Option("--threads", min=1, help=_help("threads"))] = None,
) -> None:
    """Adapt a model to your labelled texts: a new bundle, chosen and calibrated on a
    held-out part of them, that serves like any other (no torch needed)."""
    from ..adapt.report import print_table
    from ..adapt.run import adapt as run_adapt

    options = AdaptOptions(
        data=data, out=out, base=base, minutes=minutes, seed=seed, val_fraction=val_fraction,
        text_column=text_column, label_column=label_column,
        labels=tuple(x for x in labels.split(",") if x.strip()) if labels else None,
        data_dir=data_dir, overwrite=overwrite, name=name, threads=threads,
    )  # fmt: skip
    result = run_adapt(options)
    chosen = result.chosen
    print_table(result.report, f"adapted {base} -> {result.out} ({chosen.method})")
    for note in result.notes:
        typer.echo(f"note: {note}", err=True)
    tried = ", ".join(f"{c.method} {100 * c.val_accuracy:.2f}%" for c in result.others)
    typer.echo(
        f"chose {chosen.method} (validation accuracy {100 * chosen.val_accuracy:.2f}%; "
        f"also tried: {tried or 'nothing else'}) in {result.seconds:.0f} s; "
        f"serve it with: qinggan serve --model {result.out}"
    )
