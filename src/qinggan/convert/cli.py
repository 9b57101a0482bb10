"""The body of ``qinggan convert``: options in, progress on stderr, parity table on stdout."""

from __future__ import annotations

import time

from rich.console import Console

from ..errors import QingganError
from .converter import ParityError, convert_checkpoint
from .parity import parity_table
from .quantize import WEIGHT_TYPES
from .texts import read_text_file


def run_convert(
    src: str,
    out: str,
    *,
    int8: bool,
    force_int8: bool,
    max_length: int | None,
    name: str | None,
    layout: str,
    labels: str | None,
    parity_texts: str | None,
    int8_weights: str,
    reduce_range: bool,
    int8_search: bool,
    min_int8_agreement: float,
    fuse: bool,
    overwrite: bool,
) -> None:
    if int8_weights not in WEIGHT_TYPES:
        raise QingganError(f"--int8-weights must be one of {', '.join(WEIGHT_TYPES)}")
    label_names = [x.strip() for x in labels.split(",")] if labels else None
    extra = read_text_file(parity_texts) if parity_texts else []
    _quiet_transformers()
    stdout, stderr = Console(), Console(stderr=True, soft_wrap=True)
    started = time.perf_counter()

    def log(message: str) -> None:
        stderr.print(f"[dim]{time.perf_counter() - started:6.1f}s[/dim] {message}", highlight=False)

    try:
        result = convert_checkpoint(
            src, out, layout=layout, name=name, max_length=max_length, int8=int8,
            force_int8=force_int8, min_int8_agreement=min_int8_agreement,
            int8_weights=int8_weights, reduce_range=reduce_range,
            int8_search=int8_search, labels=label_names,
            parity_texts=extra, fuse=fuse, overwrite=overwrite, log=log,
        )  # fmt: skip
    except ParityError as exc:
        stdout.print(parity_table(exc.report))
        raise
    stdout.print(parity_table(result.report))
    q = result.report.int8
    if q is not None and not q.accepted:
        verdict = "kept anyway (--force-int8), fp32 stays the default" if q.forced else "REFUSED"
        tried = ", ".join(a["preset"] for a in q.attempts)
        stderr.print(
            f"[bold red]WARNING: int8 agrees with fp32 on only {q.label_agreement:.1%} of texts "
            f"(< {q.min_agreement:.0%}; tried {tried}): int8 variant {verdict}; "
            "the bundle serves fp32 by default.[/bold red]"
        )
    m = result.bundle.manifest
    stdout.print(
        f"wrote {result.bundle.path}: {', '.join(sorted(m.models))} (default "
        f"{m.preferred_variant}), labels {', '.join(m.labels)}, max_length {m.max_length}",
        highlight=False,
    )


def _quiet_transformers() -> None:
    """No progress bars or load reports from transformers on the user's terminal."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
