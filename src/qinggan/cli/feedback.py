"""``qinggan feedback``: read a corrections store (``qinggan serve --feedback-db``)."""

from __future__ import annotations

from typing import Annotated

import typer

from .app import _emit_json, app

feedback_app = typer.Typer(
    name="feedback",
    help="Corrections stored by 'qinggan serve --feedback-db': export them, count them.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(feedback_app)

TargetArgument = Annotated[
    str, typer.Argument(help="The store: a SQLite file path or a postgresql:// URL.")
]


@feedback_app.command()
def export(
    target: TargetArgument,
    output: Annotated[
        str,
        typer.Option(
            "--output", "-o", help="File to write: .csv, .tsv, .jsonl or .parquet; - for stdout."
        ),
    ],
) -> None:
    """Write every correction (text, label, then what was recorded) to a file."""
    from ..feedback import open_store
    from ..feedback.export import export as write

    with open_store(target, create=False) as store:
        rows = write(store.corrections(), output)
    if output != "-":
        typer.echo(f"{rows} corrections written to {output}", err=True)


@feedback_app.command()
def stats(
    target: TargetArgument,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """How many texts were corrected, per label, since when."""
    from ..feedback import open_store

    with open_store(target, create=False) as store:
        result = store.stats()
    if as_json:
        _emit_json(result.to_dict())
        return
    typer.echo(f"corrections: {result.count}")
    for label, count in result.by_label.items():
        typer.echo(f"  {label}: {count}")
    typer.echo(f"since:       {result.since or '-'}")
