"""``qinggan convert``: a checkpoint into a verified bundle.

Every option's default, help text and allowed values come from
:class:`qinggan.build_options.ConvertOptions` (``tests/test_build_options.py`` checks the
command against it); the converter itself (torch) is imported only when the command runs.
"""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from ..build_options import LAYOUTS, ConvertOptions
from ..onnx_tools import WEIGHT_TYPES
from ..options import help_of
from .app import app

D = ConvertOptions()


def _help(name: str) -> str:
    return help_of(ConvertOptions, name)


@app.command()
def convert(
    src: Annotated[str, typer.Argument(help="Checkpoint directory (Hugging Face or ModelScope).")],
    out: Annotated[str, typer.Argument(help="Bundle directory to create.")],
    int8: Annotated[bool, typer.Option("--int8/--no-int8", help=_help("int8"))] = D.int8,
    force_int8: Annotated[
        bool, typer.Option("--force-int8", help=_help("force_int8"))
    ] = D.force_int8,
    max_length: Annotated[
        int | None, typer.Option("--max-length", min=2, help=_help("max_length"))
    ] = D.max_length,
    name: Annotated[str | None, typer.Option("--name", help=_help("name"))] = D.name,
    layout: Annotated[
        Literal[LAYOUTS],  # type: ignore[valid-type]
        typer.Option("--layout", help=_help("layout")),
    ] = D.layout,
    labels: Annotated[str | None, typer.Option("--labels", help=_help("labels"))] = None,
    parity_texts: Annotated[
        str | None, typer.Option("--parity-texts", help=_help("parity_texts"))
    ] = None,
    int8_weights: Annotated[
        Literal[WEIGHT_TYPES],  # type: ignore[valid-type]
        typer.Option("--int8-weights", help=_help("int8_weights")),
    ] = D.int8_weights,
    reduce_range: Annotated[
        bool, typer.Option("--reduce-range", help=_help("reduce_range"))
    ] = D.reduce_range,
    int8_search: Annotated[
        bool, typer.Option("--int8-search/--no-int8-search", help=_help("int8_search"))
    ] = D.int8_search,
    min_int8_agreement: Annotated[
        float,
        typer.Option("--min-int8-agreement", min=0.0, help=_help("min_int8_agreement")),
    ] = D.min_int8_agreement,
    fuse: Annotated[bool, typer.Option("--fuse/--no-fuse", help=_help("fuse"))] = D.fuse,
    overwrite: Annotated[bool, typer.Option("--overwrite", help=_help("overwrite"))] = D.overwrite,
    tolerance: Annotated[
        float, typer.Option("--tolerance", min=0.0, help=_help("tolerance"))
    ] = D.tolerance,
) -> None:
    """Convert a checkpoint into a bundle and verify parity (extra: convert)."""
    from ..convert.cli import run_convert
    from ..convert.texts import read_text_file

    options = ConvertOptions(
        layout=layout,
        name=name,
        max_length=max_length,
        labels=tuple(x.strip() for x in labels.split(",")) if labels else None,
        parity_texts=tuple(read_text_file(parity_texts)) if parity_texts else (),
        int8=int8,
        force_int8=force_int8,
        min_int8_agreement=min_int8_agreement,
        int8_weights=int8_weights,
        reduce_range=reduce_range,
        int8_search=int8_search,
        fuse=fuse,
        overwrite=overwrite,
        tolerance=tolerance,
    )
    run_convert(src, out, options)
