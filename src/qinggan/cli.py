"""The ``qinggan`` command line.

Each command is a thin wrapper: heavy modules (the server, the converter, training)
are imported inside the command body, so ``qinggan predict`` stays fast and never
imports torch. User mistakes end with a one-line ``error: ...`` and a non-zero exit
code, never a traceback.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Optional

import typer

from .errors import QingganError

app = typer.Typer(
    name="qinggan",
    help="情感 qinggan: fast, offline Chinese sentiment analysis on the CPU.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

ModelOption = Annotated[
    Optional[str],
    typer.Option(
        "--model",
        "-m",
        help="Bundle directory or built-in model name (fast, accurate). "
        "Default: $QINGGAN_MODEL, else the built-in default.",
        envvar="QINGGAN_MODEL",
        show_envvar=True,
    ),
]
VariantOption = Annotated[
    Optional[str],
    typer.Option("--variant", help="Model variant to run: int8 or fp32 (default: the bundle's)."),
]
ThreadsOption = Annotated[
    Optional[int],
    typer.Option("--threads", min=1, help="ONNX Runtime threads (default: all cores)."),
]


def _emit_json(obj: object) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")


@app.command()
def predict(
    texts: Annotated[
        Optional[list[str]],
        typer.Argument(help="Texts to classify. Without any, reads one text per line from stdin."),
    ] = None,
    model: ModelOption = None,
    variant: VariantOption = None,
    threads: ThreadsOption = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON lines (always on when reading stdin).")
    ] = False,
    no_truncate: Annotated[
        bool,
        typer.Option("--no-truncate", help="Fail on texts longer than the model's token limit."),
    ] = False,
) -> None:
    """Classify texts given as arguments or read from stdin (one per line, JSON lines out)."""
    from .engine import load

    clf = load(model, variant=variant, threads=threads, truncate=not no_truncate)
    if texts:
        for text, pred in zip(texts, clf.predict(texts), strict=True):
            if as_json:
                _emit_json({"text": text, **pred.to_dict()})
            else:
                typer.echo(f"{pred.label}\t{pred.confidence:.4f}\t{pred.label_zh}\t{text}")
        return
    if sys.stdin.isatty():
        raise QingganError("no texts given: pass them as arguments or pipe one per line on stdin")
    _predict_stream(clf, sys.stdin)


def _predict_stream(clf, lines, chunk: int = 256) -> None:  # type: ignore[no-untyped-def]
    """Score a stream of lines in chunks, writing JSON lines in order; blank lines get an error."""
    buffer: list[str] = []

    def flush() -> None:
        texts = [t for t in buffer if t.strip()]
        preds = iter(clf.predict(texts)) if texts else iter(())
        for text in buffer:
            if text.strip():
                _emit_json({"text": text, **next(preds).to_dict()})
            else:
                _emit_json({"text": text, "error": "empty text"})
        sys.stdout.flush()
        buffer.clear()

    for line in lines:
        buffer.append(line.rstrip("\r\n"))
        if len(buffer) >= chunk:
            flush()
    if buffer:
        flush()


@app.command()
def info(
    model: Annotated[
        Optional[str], typer.Argument(help="Bundle directory or built-in model name.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the full manifest as JSON.")] = False,
) -> None:
    """Show a bundle's manifest: labels, limits, provenance, parity and metrics."""
    from dataclasses import asdict

    from .bundle import builtin_models, load_bundle, resolve_model

    bundle = load_bundle(resolve_model(model))
    m = bundle.manifest
    if as_json:
        _emit_json({"path": str(bundle.path), **asdict(m)})
        return
    typer.echo(f"name:        {m.name}")
    typer.echo(f"path:        {bundle.path}")
    typer.echo(f"labels:      {', '.join(f'{a} ({b})' for a, b in zip(m.labels, m.display_labels))}")
    typer.echo(f"variants:    {', '.join(sorted(m.models))} (default {m.preferred_variant})")
    typer.echo(f"max_length:  {m.max_length} tokens")
    for rel, digest in m.files.items():
        size = (bundle.path / rel).stat().st_size
        typer.echo(f"file:        {rel}  {size / 1e6:.1f} MB  sha256 {digest[:16]}…")
    for key in ("source", "parity", "metrics", "training"):
        value = getattr(m, key)
        if value:
            typer.echo(f"{key + ':':<12} {json.dumps(value, ensure_ascii=False)}")
    if model is None:
        typer.echo(f"built-in:    {', '.join(builtin_models()) or 'none'}")


def main() -> None:
    """Entry point: run the app, turning qinggan errors into one-line messages."""
    try:
        app()
    except QingganError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except BrokenPipeError:
        raise SystemExit(0) from None


if __name__ == "__main__":
    main()
