"""``qinggan adapt``: a model for the user's own domain from their labelled texts.

Every option's flag, help, default and limit comes from
:class:`qinggan.adapt.config.AdaptOptions`; scikit-learn and onnx are imported only when
the command runs.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ..adapt.config import AdaptOptions
from ..options import help_of
from .app import app, dataclass_options

FLAGS = ("out", "base", "minutes", "seed", "val_fraction", "text_column", "label_column",
         "labels", "data_dir", "overwrite", "name", "threads", "head_replay_rows",
         "ngram_replay_rows", "guard_rows")  # fmt: skip


@app.command()
@dataclass_options(AdaptOptions, FLAGS)
def adapt(
    data: Annotated[str, typer.Argument(help=help_of(AdaptOptions, "data"))],
    **values: Any,
) -> None:
    """Adapt a model to your labelled texts: a new bundle, chosen and calibrated on a
    held-out part of them, that serves like any other (no torch needed)."""
    from ..adapt.report import print_table
    from ..adapt.run import adapt as run_adapt

    if not values.get("out"):
        raise typer.BadParameter("is required", param_hint="--out")
    values["labels"] = AdaptOptions.split_labels(values.get("labels"))
    result = run_adapt(AdaptOptions(data=data, **values))
    chosen = result.chosen
    print_table(result.report, f"adapted {values['base']} -> {result.out} ({chosen.method})")
    for note in result.notes:
        typer.echo(f"note: {note}", err=True)
    tried = ", ".join(f"{c.method} {100 * c.val_accuracy:.2f}%" for c in result.others)
    typer.echo(
        f"chose {chosen.method} (held-out accuracy {100 * chosen.val_accuracy:.2f}%; "
        f"also tried: {tried or 'nothing else'}) in {result.seconds:.0f} s; "
        f"serve it with: qinggan serve --model {result.out}"
    )
