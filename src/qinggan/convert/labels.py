"""Map a checkpoint's label names onto qinggan's canonical sentiment labels.

Sentiment labels are spelled many ways (``正面``/``负面``, ``positive``, ``POS``,
``积极``...). Recognised names become ``Positive``/``Negative`` (and ``Neutral``) with
Chinese display names; any other label set is kept as it is.

``LABEL_0``/``LABEL_1`` (what transformers writes when a model was trained without
names) carry no meaning, so for exactly two such labels we *assume* the convention of
ChnSentiCorp, waimai-10k, weibo_senti_100k and most Chinese binary sentiment sets:
0 = negative, 1 = positive. The assumption is recorded in the bundle's provenance;
pass explicit ``labels`` to override it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import QingganError

CANONICAL = {
    "Positive": ("positive", "pos", "正面", "积极", "正向", "好评", "正"),
    "Negative": ("negative", "neg", "负面", "消极", "负向", "差评", "负"),
    "Neutral": ("neutral", "neu", "中性", "中立"),
}
DISPLAY = {"Positive": "正面", "Negative": "负面", "Neutral": "中性"}
_LOOKUP = {alias: name for name, aliases in CANONICAL.items() for alias in aliases}
GENERIC_BINARY = ("label_0", "label_1")
GENERIC_ASSUMPTION = "LABEL_0/LABEL_1 read as Negative/Positive (0 = negative, 1 = positive)"


@dataclass(frozen=True)
class LabelMap:
    """Labels in output order, their display names and what the source called them."""

    labels: tuple[str, ...]
    display_labels: tuple[str, ...]
    source_labels: tuple[str, ...]
    assumption: str = ""


def canonical_label(name: str) -> str | None:
    """The canonical name for a sentiment label spelling, or ``None`` if it is not one."""
    return _LOOKUP.get(name.strip().lower())


def map_labels(source: Sequence[str], override: Sequence[str] | None = None) -> LabelMap:
    """Canonicalise ``source`` (label names in output order); ``override`` replaces them."""
    source = tuple(str(s) for s in source)
    assumption = ""
    names: Sequence[str] = source
    if override is not None:
        if len(override) != len(source):
            raise QingganError(
                f"--labels names {len(override)} labels but the model has {len(source)} outputs "
                f"({', '.join(source)})"
            )
        names = tuple(override)
    elif tuple(s.strip().lower() for s in source) == GENERIC_BINARY:
        names = ("Negative", "Positive")
        assumption = GENERIC_ASSUMPTION
    labels = tuple(canonical_label(n) or n for n in names)
    if len(set(labels)) != len(labels):
        raise QingganError(
            f"labels {list(names)} map to duplicates {list(labels)}; pass --labels to name them"
        )
    display = tuple(DISPLAY.get(label, orig) for label, orig in zip(labels, names, strict=True))
    return LabelMap(labels, display, source, assumption)
