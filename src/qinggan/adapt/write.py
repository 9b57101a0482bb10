"""Writing the adapted bundle atomically.

Everything is built in a hidden directory beside OUT and renamed into place at the end, so
a run killed at any point leaves OUT absent (or, with ``--overwrite``, the old OUT) or
complete, never half written. A killed run's leftover directory is removed by the next run.

The bundle is self-contained: an ensemble whose members (the encoder with its new head, the
n-gram model, or the base's own members) are copied inside it, so it survives
``pip install -U qinggan`` and being copied to another machine.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..bundle import Bundle, write_bundle
from .errors import AdaptError
from .features import write_head
from .methods import Candidate, Head, Member
from .ngram import NgramFit, export

TEMP_MARK = ".adapt-tmp-"
# an export bug disagrees grossly; int8 batch noise (sharpened by a low temperature) a little
MIN_AGREEMENT = 0.95
MAX_MEAN_DIFF = 0.05


def check_out(out: Path, overwrite: bool) -> None:
    """Fail before any work when OUT exists (without ``overwrite``) or cannot be made."""
    if out.exists() and not overwrite:
        raise AdaptError(f"{out} already exists; pass --overwrite to replace it")
    if out.exists() and not out.is_dir():
        raise AdaptError(f"{out} exists and is not a directory")
    if not out.parent.is_dir():
        raise AdaptError(f"the directory {out.parent} does not exist")
    if not os.access(out.parent, os.W_OK):
        raise AdaptError(f"cannot write into {out.parent}")


def _clean_stale(out: Path) -> None:
    """Remove directories left by killed runs (their process is gone)."""
    for stale in out.parent.glob(f".{out.name}{TEMP_MARK}*"):
        pid = stale.name.rsplit("-", 2)[-2] if stale.name.count("-") >= 2 else ""
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def atomic_dir(out: Path, overwrite: bool, build: Callable[[Path], None]) -> None:
    """Run ``build(tmp)`` in a fresh directory beside ``out``, then rename it to ``out``."""
    check_out(out, overwrite)
    _clean_stale(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}{TEMP_MARK}{os.getpid()}-", dir=out.parent))
    try:
        tmp.chmod(0o777 & ~_umask())
        build(tmp)
        if out.exists():
            old = out.parent / f".{out.name}{TEMP_MARK}{os.getpid()}-old"
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_member(root: Path, member: Member, sources: dict[str, Bundle], name: str,
                 labels: tuple[str, ...], extractor: Any) -> str:  # fmt: skip
    """Write one member into ``root/<kind>`` and return that relative path."""
    rel = member.kind
    target = root / rel
    if member.kind in sources:  # a base member, unchanged
        shutil.copytree(sources[member.kind].path, target)
        return rel
    target.mkdir()
    if isinstance(member.fitted, Head):
        encoder: Bundle = extractor.bundle
        variant = encoder.manifest.preferred_variant
        graph = f"model.{variant}.onnx"
        write_head(extractor.model, extractor.feature, member.fitted.weight,
                   member.fitted.bias, target / graph)  # fmt: skip
        shutil.copyfile(encoder.tokenizer_path, target / "tokenizer.json")
        m = encoder.manifest
        write_bundle(
            target, name=f"{name}-head", labels=labels, models={variant: graph},
            max_length=m.max_length, text_prefix=m.text_prefix, inputs=m.inputs,
            default_variant=variant,
            source={"kind": "qinggan.adapt", "architecture": f"{m.name} encoder + new "
                    "logistic-regression head on its pooled features", "base": m.name},
        )  # fmt: skip
    elif isinstance(member.fitted, NgramFit):
        export(member.fitted, target / "model.onnx")
        member.fitted.tokenizer.save(str(target / "tokenizer.json"))
        write_bundle(
            target, name=f"{name}-ngram", labels=labels, models={"fp32": "model.onnx"},
            max_length=512, inputs=("input_ids",),
            source={"kind": "qinggan.adapt", "architecture": "char 1-3-gram TF-IDF "
                    "(sublinear tf, l2) + logistic regression"},
        )  # fmt: skip
    else:
        raise AdaptError(f"cannot write member {member.kind!r}")
    return rel


def write_adapted(
    root: Path,
    chosen: Candidate,
    *,
    name: str,
    labels: tuple[str, ...],
    sources: dict[str, Bundle],
    extractor: Any,
    max_length: int,
    manifest_fields: dict[str, Any],
) -> Bundle:
    """Write the chosen candidate as an ensemble bundle into ``root``."""
    members = [
        {"path": write_member(root, m, sources, name, labels, extractor), "weight": w}
        for m, w in zip(chosen.members, chosen.weights, strict=True)
    ]
    return write_bundle(
        root, name=name, labels=labels, models={}, max_length=max_length, members=members,
        temperature=chosen.temperature, **manifest_fields,
    )  # fmt: skip


def check_parity(root: Path, texts: list[str], expected: np.ndarray, threads: int) -> float:
    """Score ``texts`` with the written bundle; fail if it disagrees with what was chosen.

    An int8 encoder quantises activations per batch, so the same text batched with other
    texts moves a little: labels must agree on :data:`MIN_AGREEMENT` of the texts and
    probabilities by :data:`MAX_MEAN_DIFF` on average, not bit for bit.
    """
    from ..engine import load

    if not texts:
        return 0.0
    clf = load(root, threads=threads)
    got = np.array([[p.scores[label] for label in clf.labels] for p in clf.predict(texts)])
    agreement = float((got.argmax(axis=1) == expected.argmax(axis=1)).mean())
    diff = float(np.abs(got - expected).mean())
    if agreement < MIN_AGREEMENT or diff > MAX_MEAN_DIFF:
        raise AdaptError(
            f"the written bundle disagrees with the fitted model (labels agree on "
            f"{100 * agreement:.1f}% of {len(texts)} texts, mean |p diff| {diff:.3f})"
        )
    return diff
