"""``qinggan convert``: a checkpoint into a verified bundle."""

from __future__ import annotations

from typing import Annotated

import typer

from .app import app


@app.command()
def convert(
    src: Annotated[str, typer.Argument(help="Checkpoint directory (Hugging Face or ModelScope).")],
    out: Annotated[str, typer.Argument(help="Bundle directory to create.")],
    int8: Annotated[
        bool, typer.Option("--int8/--no-int8", help="Also build and check an int8 variant.")
    ] = True,
    force_int8: Annotated[
        bool, typer.Option("--force-int8", help="Keep int8 even below the agreement threshold.")
    ] = False,
    max_length: Annotated[
        int | None, typer.Option("--max-length", min=2, help="Token limit (default: the source's).")
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="Bundle name (default: OUT's name).")
    ] = None,
    layout: Annotated[str, typer.Option("--layout", help="auto, hf or modelscope.")] = "auto",
    labels: Annotated[
        str | None, typer.Option("--labels", help="Comma-separated label names in output order.")
    ] = None,
    parity_texts: Annotated[
        str | None, typer.Option("--parity-texts", help="Extra parity texts, one per line.")
    ] = None,
    int8_weights: Annotated[
        str, typer.Option("--int8-weights", help="u8 (AVX2-safe) or s8.")
    ] = "u8",
    reduce_range: Annotated[
        bool, typer.Option("--reduce-range", help="7-bit int8 weights.")
    ] = False,
    int8_search: Annotated[
        bool,
        typer.Option("--int8-search/--no-int8-search", help="Try other int8 presets if needed."),
    ] = True,
    min_int8_agreement: Annotated[
        float,
        typer.Option("--min-int8-agreement", min=0.0, help="int8/fp32 label agreement needed."),
    ] = 0.99,
    fuse: Annotated[
        bool, typer.Option("--fuse/--no-fuse", help="ONNX Runtime BERT fusions.")
    ] = True,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace OUT if it exists.")
    ] = False,
) -> None:
    """Convert a checkpoint into a bundle and verify parity (extra: convert)."""
    from ..convert.cli import run_convert

    run_convert(
        src, out, int8=int8, force_int8=force_int8, max_length=max_length, name=name,
        layout=layout, labels=labels, parity_texts=parity_texts, int8_weights=int8_weights,
        reduce_range=reduce_range, min_int8_agreement=min_int8_agreement, fuse=fuse,
        overwrite=overwrite, int8_search=int8_search,
    )  # fmt: skip
