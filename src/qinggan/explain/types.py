"""What an explanation is: spans of the text, each with a signed score."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Level = Literal["clause", "phrase"]
LEVELS: tuple[Level, ...] = ("clause", "phrase")


@dataclass(frozen=True, slots=True)
class Span:
    """A piece of the text: ``text == whole[start:end]`` with offsets in code points (what
    Python's ``str`` indexes), ``score`` in [-1, 1] (> 0 supports Positive)."""

    start: int
    end: int
    text: str
    score: float
    level: Level

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "end": self.end,
            "text": self.text,
            "score": round(self.score, 4),
            "level": self.level,
        }


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why a prediction came out as it did.

    ``spans`` hold every clause (in text order) and then the strongest phrases (in text
    order); ``mixed`` is true when clauses of both polarities each have strong support;
    ``method`` names how the scores were computed.
    """

    method: str
    mixed: bool
    spans: tuple[Span, ...] = field(default_factory=tuple)

    def of_level(self, level: Level) -> list[Span]:
        return [s for s in self.spans if s.level == level]

    def strongest(self, sign: int, level: Level = "phrase") -> Span | None:
        """The span of ``level`` with the largest score of the given sign (+1 or -1)."""
        candidates = [s for s in self.spans if s.level == level and s.score * sign > 0]
        return max(candidates, key=lambda s: s.score * sign, default=None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "mixed": self.mixed,
            "spans": [s.to_dict() for s in self.spans],
        }
