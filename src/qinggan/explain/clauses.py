"""Cutting a review into clauses and candidate phrases, with offsets in code points.

Clauses end at sentence punctuation (full- and half-width), at line breaks, at spaces
between Chinese characters, and before contrast words (但是, 不过, ...). Spans never include
the separators, nor a contrast word that opens a clause (read alone, "但是房间隔音太差了"
sounds half-positive to a model that expects praise before 但是; "房间隔音太差了" does not),
so a highlighted clause is the words themselves.
"""

from __future__ import annotations

import re

# longest first, so that 但是 wins over 但
CONTRAST_WORDS = (
    "但是", "不过", "可是", "然而", "只是", "就是", "可惜", "而是", "反而", "虽然", "但",
)  # fmt: skip
MIN_AFTER_CONTRAST = 3  # keep the word when less follows it (不过如此 stays whole)
MAX_CLAUSES = 64  # longer texts get their clauses merged into this many groups
PHRASE_WIDTH = 4  # characters in a candidate phrase window
PHRASE_STRIDE = 2

_CJK = r"\u3400-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
_SEPARATORS = re.compile(
    r"[，,。！!？?；;：:、…~～\n\r\t|/\\（）()【】\[\]「」『』《》<>\"“”]+"
    r"|(?<!\d)\.|\.(?!\d)"
    rf"|(?<=[{_CJK}])\s+(?=[{_CJK}])"
)
_CONTRAST = re.compile("|".join(CONTRAST_WORDS))


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _pieces(text: str) -> list[tuple[int, int]]:
    pieces, begin = [], 0
    for match in _SEPARATORS.finditer(text):
        pieces.append((begin, match.start()))
        begin = match.end()
    pieces.append((begin, len(text)))
    return pieces


def clauses(text: str, max_clauses: int = MAX_CLAUSES) -> list[tuple[int, int]]:
    """(start, end) of each clause, in order, non-empty and non-overlapping; at most
    ``max_clauses`` (neighbours are merged into groups of about equal length beyond)."""
    out: list[tuple[int, int]] = []
    for begin, end in _pieces(text):
        cuts = [begin]
        for match in _CONTRAST.finditer(text, begin, end):
            if match.start() > cuts[-1] and text[cuts[-1] : match.start()].strip():
                cuts.append(match.start())
        cuts.append(end)
        for a, b in zip(cuts, cuts[1:], strict=False):
            a, b = _strip(text, a, b)
            opener = _CONTRAST.match(text, a, b)
            if opener and len(text[opener.end() : b].strip()) >= MIN_AFTER_CONTRAST:
                a, b = _strip(text, opener.end(), b)
            if b > a:
                out.append((a, b))
    return merge(out, max_clauses)


def merge(spans: list[tuple[int, int]], limit: int) -> list[tuple[int, int]]:
    """Consecutive spans joined into at most ``limit`` groups of similar total length."""
    if len(spans) <= limit:
        return spans
    total = sum(b - a for a, b in spans)
    groups: list[tuple[int, int]] = []
    size = 0
    for a, b in spans:  # a group opens each time the running size passes a 1/limit share
        if not groups or size >= total * len(groups) / limit:
            groups.append((a, b))
        else:
            groups[-1] = (groups[-1][0], b)
        size += b - a
    return groups


def windows(start: int, end: int, width: int, stride: int) -> list[tuple[int, int]]:
    """Candidate phrases inside [start, end): windows of ``width`` every ``stride``
    characters, the last one flush with the end; none when the span is that short."""
    if end - start <= width:
        return []
    out = [(a, a + width) for a in range(start, end - width, stride)]
    if out[-1][1] != end:
        out.append((end - width, end))
    return out


def phrase_candidates(text: str, start: int, end: int, dense: bool) -> list[tuple[int, int]]:
    """Windows inside a clause to score as phrases. ``dense``: every width from 2 to
    ``PHRASE_WIDTH`` at every position (for scorers where a span costs next to nothing)."""
    if dense:
        spans = [w for width in range(2, PHRASE_WIDTH + 1) for w in windows(start, end, width, 1)]
    else:
        spans = windows(start, end, PHRASE_WIDTH, PHRASE_STRIDE)
    return [(a, b) for a, b in spans if not (text[a].isspace() or text[b - 1].isspace())]
