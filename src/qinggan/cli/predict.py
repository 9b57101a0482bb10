"""``qinggan predict``: texts, stdin lines or whole files."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from ..errors import QingganError
from ..settings import LoadOptions
from .app import ModelOption, _emit_json, app, dataclass_options

if TYPE_CHECKING:
    from ..files import ScoreOptions
    from ..interface import Model

Engine = Literal["local", "ray"]


@app.command()
@dataclass_options(LoadOptions, ("variant", "threads", "truncate", "long_texts"))
def predict(
    texts: Annotated[
        list[str] | None,
        typer.Argument(help="Texts to classify. Without any, reads one text per line from stdin."),
    ] = None,
    model: ModelOption = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON lines (always on when reading stdin).")
    ] = False,
    input_path: Annotated[
        str | None,
        typer.Option(
            "--input",
            "-i",
            help="Score a file (csv, tsv, jsonl, parquet, txt; .gz ok) or - for stdin.",
        ),
    ] = None,
    output_path: Annotated[
        str | None,
        typer.Option(
            "--output", "-o", help="Output file; its extension picks the format. - = stdout."
        ),
    ] = None,
    text_column: Annotated[
        str, typer.Option("--text-column", help="Column (or JSON field) holding the text.")
    ] = "text",
    input_format: Annotated[
        str, typer.Option("--format", help="Input format: auto, csv, tsv, jsonl, parquet, txt.")
    ] = "auto",
    chunk_size: Annotated[
        int, typer.Option("--chunk-size", min=1, help="Rows read, scored and saved at a time.")
    ] = 1024,
    resume: Annotated[
        bool | None,
        typer.Option(
            "--resume/--no-resume",
            help="Continue an interrupted run (default: when its checkpoint matches); "
            "--no-resume starts over.",
        ),
    ] = None,
    prefix: Annotated[
        str, typer.Option("--prefix", help="Prefix for the added columns (e.g. pred_).")
    ] = "",
    engine: Annotated[
        Engine,
        typer.Option("--engine", help="Where files are scored: this process or a Ray actor pool."),
    ] = "local",
    concurrency: Annotated[
        int | None,
        typer.Option("--concurrency", min=1, help="Ray actors (default: the cluster's CPUs)."),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar and no summary.")
    ] = False,
    **load: Any,
) -> None:
    """Classify texts given as arguments, read from stdin, or in a file (--input/--output)."""
    options = LoadOptions(**load)
    if input_path is not None or output_path is not None:
        _check_file_input(texts, input_path)
        from ..files import ScoreOptions

        score = ScoreOptions(
            text_column=text_column, input_format=input_format, chunk_size=chunk_size,
            prefix=prefix, fail_long=not options.truncate, resume=resume, progress=not quiet,
        )  # fmt: skip
        scorer = _file_scorer(model, options, engine, concurrency)
        _predict_file(input_path or "-", output_path or "-", score, scorer, quiet)
        return
    from ..engine import load_with

    clf = load_with(model, options)
    if texts:
        _print_predictions(clf, texts, as_json)
        return
    if sys.stdin.isatty():
        raise QingganError("no texts given: pass them as arguments or pipe one per line on stdin")
    _predict_stream(clf, sys.stdin)


def _check_file_input(texts: list[str] | None, input_path: str | None) -> None:
    """File mode reads a file or piped rows, never texts given as arguments."""
    if texts:
        raise QingganError("pass texts as arguments or use --input, not both")
    if input_path in (None, "-") and sys.stdin.isatty():
        raise QingganError("no input: pass --input FILE or pipe rows on stdin")


def _print_predictions(clf: Model, texts: list[str], as_json: bool) -> None:
    """One line per text: JSON, or label, confidence, Chinese label and the text."""
    for text, pred in zip(texts, clf.predict(texts), strict=True):
        if as_json:
            _emit_json({"text": text, **pred.to_dict()})
        else:
            typer.echo(f"{pred.label}\t{pred.confidence:.4f}\t{pred.label_zh}\t{text}")


def _file_scorer(
    model: str | None, options: LoadOptions, engine: Engine, concurrency: int | None
) -> Any:
    """What scores a file's chunks: a local classifier (which truncates; ``fail_long``
    turns over-long rows into row errors) or a Ray actor pool."""
    if engine == "ray":
        from ..scale import RayChunkScorer

        return RayChunkScorer(
            model,
            variant=options.variant,
            threads=options.threads or 1,
            concurrency=concurrency,
            long_texts=options.long_texts,
        )
    from ..engine import load_with
    from ..files import LocalScorer

    return LocalScorer(load_with(model, dataclasses.replace(options, truncate=True)))


def _predict_file(
    input_path: str, output_path: str, options: ScoreOptions, scorer: Any, quiet: bool
) -> None:
    """``predict --input``: stream a file through ``scorer``, then close it."""
    from ..files import score_file

    try:
        summary = score_file(input_path, output_path, scorer, options)
    finally:
        scorer.close()
    if not quiet:
        typer.echo(summary.describe(), err=True)


def _predict_stream(clf: Model, lines: Iterable[str], chunk: int = 256) -> None:
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
