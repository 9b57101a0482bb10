"""Knowledge distillation: a teacher bundle's soft labels and the loss that learns from them.

Any bundle can teach (a built-in name, a trained or converted bundle, an ensemble): the
engine gives its calibrated probabilities, whose logarithms serve as logits (a softmax
does not see the constant that separates them). The student's loss is the usual mix of
the two: ``alpha × T² × KL(teacher/T ‖ student/T) + (1 − alpha) × cross-entropy(labels)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch.nn import functional as F

from ..build_options import DISTILL_ALPHA as DEFAULT_ALPHA
from ..build_options import DISTILL_TEMPERATURE as DEFAULT_TEMPERATURE
from ..engine import load
from ..errors import QingganError

CHUNK = 512  # texts per predict call, so the progress bar moves


def teacher_logits(
    teacher: str,
    texts: Sequence[str],
    labels: Sequence[str],
    *,
    threads: int = 2,
    console: Console | None = None,
) -> tuple[np.ndarray, str]:
    """The teacher's log-probabilities for ``texts`` (columns in ``labels`` order) and its name."""
    clf = load(teacher, threads=threads)
    name = clf.bundle.manifest.name
    if sorted(clf.labels) != sorted(labels):
        raise QingganError(
            f"teacher {teacher!r} has labels {list(clf.labels)}; the student needs {list(labels)}"
        )
    out = np.empty((len(texts), len(labels)), dtype=np.float32)
    columns = (
        TextColumn("teacher {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console or Console(), transient=False) as progress:
        task = progress.add_task(name, total=len(texts))
        for start in range(0, len(texts), CHUNK):
            chunk = clf.predict(list(texts[start : start + CHUNK]))
            for row, p in enumerate(chunk, start):
                out[row] = [p.scores[label] for label in labels]
            progress.update(task, advance=len(chunk))
    return np.log(np.clip(out, 1e-7, 1.0)), name


def distill_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    labels: torch.Tensor,
    *,
    alpha: float = DEFAULT_ALPHA,
    temperature: float = DEFAULT_TEMPERATURE,
) -> torch.Tensor:
    """Soft-label KL at ``temperature`` (scaled by T² so its gradients keep their size),
    mixed with the hard-label cross-entropy."""
    t = temperature
    soft = F.kl_div(
        F.log_softmax(student / t, dim=-1),
        F.log_softmax(teacher / t, dim=-1),
        log_target=True,
        reduction="batchmean",
    )
    return alpha * t * t * soft + (1 - alpha) * F.cross_entropy(student, labels)
