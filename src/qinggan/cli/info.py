"""``qinggan info``: a bundle's manifest."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from .app import ModelOption, _emit_json, app, pick_model

if TYPE_CHECKING:
    from ..bundle import Bundle


@app.command()
def info(
    positional: Annotated[
        str | None,
        typer.Argument(help="Same as -m/--model (qinggan info fast).", metavar="MODEL"),
    ] = None,
    model: ModelOption = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the full manifest as JSON.")
    ] = False,
) -> None:
    """Show a bundle's manifest: labels, limits, provenance, parity and metrics."""
    from dataclasses import asdict

    from ..bundle import builtin_models, load_bundle, resolve_model

    if model is not None and positional is not None:
        raise typer.BadParameter("give the model once: as -m/--model or as the argument")
    name, _ = pick_model(model, [positional] if positional is not None else [])
    bundle = load_bundle(resolve_model(name))
    if as_json:
        _emit_json({"path": str(bundle.path), **asdict(bundle.manifest)})
        return
    _describe(bundle)
    if name is None:
        typer.echo(f"built-in:    {', '.join(builtin_models()) or 'none'}")


def _describe(bundle: Bundle) -> None:
    """The manifest as aligned ``key: value`` lines."""
    m = bundle.manifest
    typer.echo(f"name:        {m.name}")
    typer.echo(f"path:        {bundle.path}")
    typer.echo(
        "labels:      "
        + ", ".join(f"{a} ({b})" for a, b in zip(m.labels, m.display_labels, strict=True))
    )
    if m.members:
        weights = ", ".join(
            f"{member['path']} × {member.get('weight', 1.0)}" for member in m.members
        )
        typer.echo(f"members:     {weights}; temperature {m.temperature}")
        if m.gate:
            first = m.members[m.gate["member"]]["path"]
            typer.echo(
                f"gate:        {first} answers alone when >= {m.gate['confidence']:.0%} sure; "
                "the rest get every member"
            )
    else:
        typer.echo(f"variants:    {', '.join(sorted(m.models))} (default {m.preferred_variant})")
    typer.echo(f"max_length:  {m.max_length} tokens")
    for rel, digest in m.files.items():
        size = (bundle.path / rel).stat().st_size
        typer.echo(f"file:        {rel}  {size / 1e6:.1f} MB  sha256 {digest[:16]}…")
    for key in ("source", "parity", "metrics", "training"):
        value = getattr(m, key)
        if value:
            typer.echo(f"{key + ':':<12} {json.dumps(value, ensure_ascii=False)}")
