"""Options of the model-building commands, declared once: :class:`ConvertOptions`
(``qinggan convert``) and :class:`TrainConfig` (``qinggan train``).

This module imports neither torch nor the ``convert``/``train`` packages, so the CLI can
read defaults, help text and choices from it without the heavy extras; the typer
commands in ``qinggan.cli.convert`` and ``qinggan.cli.train`` take every one from here
(``tests/test_cli_build_options.py`` checks that they match).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .errors import QingganError
from .onnx_tools import WEIGHT_TYPES
from .options import option

LAYOUTS = ("auto", "hf", "modelscope")
FP32_TOLERANCE = 1e-4  # max |logit difference| between PyTorch and the fp32 graph
INT8_MIN_AGREEMENT = 0.99  # int8 becomes a bundle's default only if it agrees this often
PRESETS: dict[str, dict[str, float]] = {
    "fast": {"layers": 4, "lr": 1e-4},
    "accurate": {"layers": 12, "lr": 5e-5},
}
DISTILL_ALPHA = 0.7  # the share of the loss that follows the teacher
DISTILL_TEMPERATURE = 2.0


@dataclass(frozen=True)
class ConvertOptions:
    """How :func:`qinggan.convert.convert_checkpoint` builds and checks a bundle."""

    layout: str = option(
        "auto", "Checkpoint layout: auto (detect), hf or modelscope.", choices=LAYOUTS
    )
    name: str | None = option(None, "Bundle name (default: OUT's name).")
    max_length: int | None = option(None, "Token limit (default: the source's).")
    labels: tuple[str, ...] | None = option(
        None, "Label names in output order (comma-separated on the command line)."
    )
    parity_texts: tuple[str, ...] = option(
        (), "Extra parity texts (on the command line: a file, one per line)."
    )
    int8: bool = option(True, "Also build and check an int8 variant.")
    force_int8: bool = option(False, "Keep int8 even below the agreement threshold.")
    min_int8_agreement: float = option(
        INT8_MIN_AGREEMENT, "int8/fp32 label agreement needed to make int8 the default."
    )
    int8_weights: str = option(
        "u8", "int8 weight type: u8 (AVX2-safe) or s8 (faster on VNNI).", choices=WEIGHT_TYPES
    )
    reduce_range: bool = option(False, "7-bit int8 weights.")
    int8_search: bool = option(True, "Try other int8 presets if needed.")
    fuse: bool = option(True, "ONNX Runtime BERT fusions.")
    overwrite: bool = option(False, "Replace OUT if it exists.")
    tolerance: float = option(
        FP32_TOLERANCE, "Largest |logit difference| allowed between PyTorch and fp32 ONNX."
    )

    def __post_init__(self) -> None:
        if self.int8_weights not in WEIGHT_TYPES:  # caught before the export, not after
            raise QingganError(
                f"int8_weights must be one of {', '.join(WEIGHT_TYPES)}, not {self.int8_weights!r}"
            )


@dataclass(frozen=True)
class TrainConfig:
    """One training run of ``qinggan train`` (see ``qinggan.train.loop``)."""

    data_dir: str = option(help="Data directory with <source>/{train,dev}.csv.gz.", flag="--data")
    out_dir: str = option(help="Directory to write the bundle into.", flag="--out")
    preset: str = option(
        "fast", "fast (4 layers, lr 1e-4) or accurate (12, lr 5e-5).", choices=tuple(PRESETS)
    )
    layers: int | None = option(None, "Encoder layers to keep (1-12; default: the preset's).")
    epochs: float = option(1.0, "Passes over the training texts (the schedule spans them).")
    max_train_rows: int | None = option(None, "Sample at most this many training texts.")
    sources: list[str] | None = option(None, "Data sources to use (default: all).")
    dev_rows: int = option(2000, "Dev texts used for evaluation, early stopping and int8.")
    max_len: int = option(128, "Training token limit.", flag="--max-length")
    export_max_len: int = option(256, "The bundle's token limit (and dev's).")
    batch_size: int = option(32, "Texts per training step.")
    lr: float | None = option(None, "Peak learning rate (default: the preset's).")
    warmup: float = option(0.06, "Share of the steps spent warming the learning rate up.")
    weight_decay: float = option(0.01, "AdamW weight decay (matrices only).")
    dropout: float = option(0.1, "Dropout before the classifier.")
    freeze_embeddings: bool = option(
        True,
        "Keep the word embeddings frozen (the CLI's --train-embeddings fine-tunes them too: "
        "slower).",
    )
    eval_every: int = option(400, "Steps between dev checks.")
    patience: int = option(4, "Stop after this many dev checks without gain.")
    max_minutes: float | None = option(None, "Stop after this long.")
    max_steps: int | None = option(
        None,
        "Stop after this many steps; the learning-rate schedule still spans --epochs "
        "(replays a run that --max-minutes stopped).",
    )
    seed: int = option(13, "Seed of sampling, shuffling and initialisation.")
    threads: int = option(2, "Torch and ONNX Runtime threads.")
    name: str | None = option(None, "Bundle name (default: preset).")
    init: str | None = option(
        None,
        "Start from an earlier run's weights (the OUT.pt it saved beside its bundle) instead "
        "of e5-small's, e.g. a second stage at a longer --max-length; from a deeper run, its "
        "first --layers.",
    )
    int8_keep_fp32: list[str] = option(
        help="Leave MatMuls whose name contains this (e.g. layers.4/fo/) in fp32 in the int8 "
        "graph; repeatable. `python -m qinggan.train.requantize RUN DATA --scan` finds the "
        "ones that move labels.",
        default_factory=list,
    )
    teacher: str | None = option(
        None,
        "Distil: also learn from this bundle's soft labels on the training texts (a built-in "
        "name or a bundle path), e.g. a 4-layer student of a 12-layer run.",
    )
    distill_alpha: float = option(DISTILL_ALPHA, "Teacher's share of the loss.")
    distill_temperature: float = option(DISTILL_TEMPERATURE, "Softening of both sides.")
    extra: dict[str, object] = option(
        help="More entries for the manifest's training record (not a CLI option).",
        default_factory=dict,
    )

    def resolved(self) -> TrainConfig:
        """This config with the preset's layers, learning rate and name filled in."""
        if self.preset not in PRESETS:
            raise QingganError(f"unknown preset {self.preset!r} (known: {', '.join(PRESETS)})")
        preset = PRESETS[self.preset]
        return dataclasses.replace(
            self,
            layers=self.layers or int(preset["layers"]),
            lr=self.lr or float(preset["lr"]),
            name=self.name or self.preset,
        )
