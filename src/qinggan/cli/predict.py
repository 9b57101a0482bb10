"""``qinggan predict``: texts, stdin lines or whole files."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from ..errors import QingganError
from .app import LongTextsOption, ModelOption, ThreadsOption, VariantOption, _emit_json, app


@app.command()
def predict(
    texts: Annotated[
        list[str] | None,
        typer.Argument(help="Texts to classify. Without any, reads one text per line from stdin."),
    ] = None,
    model: ModelOption = None,
    variant: VariantOption = None,
    threads: ThreadsOption = None,
    long_texts: LongTextsOption = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON lines (always on when reading stdin).")
    ] = False,
    no_truncate: Annotated[
        bool,
        typer.Option("--no-truncate", help="Fail on texts longer than the model's token limit."),
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
        str, typer.Option("--engine", help="local (this process) or ray (actor pool).")
    ] = "local",
    concurrency: Annotated[
        int | None,
        typer.Option("--concurrency", min=1, help="Ray actors (default: the cluster's CPUs)."),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar and no summary.")
    ] = False,
) -> None:
    """Classify texts given as arguments, read from stdin, or in a file (--input/--output)."""
    if input_path is not None or output_path is not None:
        if texts:
            raise QingganError("pass texts as arguments or use --input, not both")
        if input_path in (None, "-") and sys.stdin.isatty():
            raise QingganError("no input: pass --input FILE or pipe rows on stdin")
        from ..files import ScoreOptions

        options = ScoreOptions(
            text_column=text_column,
            input_format=input_format,
            chunk_size=chunk_size,
            prefix=prefix,
            fail_long=no_truncate,
            resume=resume,
            progress=not quiet,
        )
        _predict_file(
            input_path or "-",
            output_path or "-",
            options,
            model,
            variant,
            threads,
            engine,
            concurrency,
            quiet,
            long_texts,
        )
        return
    from ..engine import load

    clf = load(
        model, variant=variant, threads=threads, truncate=not no_truncate, long_texts=long_texts
    )
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


def _predict_file(  # type: ignore[no-untyped-def]
    input_path,
    output_path,
    options,
    model,
    variant,
    threads,
    engine,
    concurrency,
    quiet,
    long_texts=None,
) -> None:
    """``predict --input``: stream a file through a local classifier or a Ray actor pool."""
    from ..files import LocalScorer, score_file
    from ..files.predictions import ChunkScorer

    if engine == "local":
        from ..engine import load

        clf = load(model, variant=variant, threads=threads, long_texts=long_texts)
        scorer: ChunkScorer = LocalScorer(clf)
    elif engine == "ray":
        from ..scale import RayChunkScorer

        scorer = RayChunkScorer(
            model,
            variant=variant,
            threads=threads or 1,
            concurrency=concurrency,
            long_texts=long_texts,
        )
    else:
        raise QingganError(f"unknown --engine {engine!r}; choose local or ray")
    try:
        summary = score_file(input_path, output_path, scorer, options)
    finally:
        getattr(scorer, "close", lambda: None)()
    if not quiet:
        typer.echo(summary.describe(), err=True)


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
