"""The body of ``qinggan convert``: options in, progress on stderr, parity table on stdout."""

from __future__ import annotations

import time

from rich.console import Console

from ..build_options import ConvertOptions
from .converter import ParityError, convert_checkpoint
from .parity import parity_table


def run_convert(src: str, out: str, options: ConvertOptions) -> None:
    """Convert with ``options``, logging each step with its elapsed time on stderr."""
    _quiet_transformers()
    stdout, stderr = Console(), Console(stderr=True, soft_wrap=True)
    started = time.perf_counter()

    def log(message: str) -> None:
        stderr.print(f"[dim]{time.perf_counter() - started:6.1f}s[/dim] {message}", highlight=False)

    try:
        result = convert_checkpoint(src, out, options, log=log)
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
