"""The ``qinggan`` typer application and the options several commands share."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

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


def _check_long_texts(value: str | None) -> str | None:
    from ..windows import LONG_TEXTS

    if value is not None and value not in LONG_TEXTS:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(LONG_TEXTS)}")
    return value


LongTextsOption = Annotated[
    str | None,
    typer.Option(
        "--long-texts",
        help="Texts over the model's token limit: window (read whole, in windows whose "
        "answers are aggregated) or truncate (cut). Default: $QINGGAN_LONG_TEXTS, else window.",
        callback=_check_long_texts,
        show_default=False,
    ),
]
ThreadsOption = Annotated[
    int | None,
    typer.Option("--threads", min=1, help="ONNX Runtime threads (default: all cores)."),
]


def _emit_json(obj: object) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
