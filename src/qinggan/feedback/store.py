"""What every corrections store offers, and the records it keeps.

A store is opened from a *target*: a SQLite file path (the embedded default) or a
PostgreSQL URL (several replicas sharing one database). Its methods block; the server
calls them on a worker thread. A write either commits before it returns or raises
:class:`StoreUnavailable` with nothing stored, so the server can answer 201 only for
corrections that survive a crash, and 503 for the rest.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..errors import QingganError

POSTGRES_SCHEMES = ("postgresql", "postgres")
SQLITE_PREFIX = "sqlite:"


class FeedbackError(QingganError):
    """A corrections store target is malformed, missing, or of a newer schema."""


class StoreUnavailable(FeedbackError):
    """The store cannot take or give corrections right now (disk full, read-only, down)."""


@dataclass(frozen=True, slots=True)
class Correction:
    """A text's correct label, plus what the model said and when (one row per text)."""

    text: str
    label: str
    predicted: str | None = None
    confidence: float | None = None
    model: str | None = None
    model_sha256: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    revisions: int = 1
    id: int | None = field(default=None)

    def to_dict(self) -> dict[str, Any]:
        """The record for exports: ``text`` and ``label`` first, then what was recorded."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Stats:
    """What ``GET /v1/feedback/stats`` answers: distinct texts, per label, oldest time."""

    count: int
    by_label: dict[str, int]
    since: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "by_label": dict(self.by_label), "since": self.since}


class Store(ABC):
    """A corrections store. Thread-safe; every method may raise :class:`StoreUnavailable`."""

    #: What logs and ``/info`` may show of the target (no password).
    description: str

    @abstractmethod
    def open(self) -> None:
        """Connect, creating (or migrating) the schema if needed. Idempotent."""

    @abstractmethod
    def record(self, correction: Correction) -> int:
        """Store ``correction`` (replacing an earlier one for the same text); its row id."""

    @abstractmethod
    def stats(self) -> Stats: ...

    @abstractmethod
    def corrections(self) -> Iterator[Correction]:
        """Every stored correction, oldest row first, streamed."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Store:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def reason(exc: BaseException) -> str:
    """An exception's message on one line (drivers' messages span several)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def now() -> str:
    """The current UTC time as ISO 8601, the form every store reports."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")


def iso(value: Any) -> str | None:
    """A database timestamp (a ``datetime`` or an ISO string) as ISO 8601 text."""
    if value is None or isinstance(value, str):
        return value
    stamp: dt.datetime = value
    return stamp.astimezone(dt.timezone.utc).isoformat(timespec="microseconds")


def is_postgres(target: str) -> bool:
    return urlsplit(target).scheme.lower() in POSTGRES_SCHEMES


def check_target(target: str) -> str:
    """``target`` if it names a store this release supports, else :class:`FeedbackError`."""
    if not target or not target.strip():
        raise FeedbackError("the corrections store target is empty")
    scheme = urlsplit(target).scheme.lower()
    if "://" in target and scheme not in (*POSTGRES_SCHEMES, "sqlite"):
        raise FeedbackError(
            f"unsupported corrections store {redact(target)!r}: give a SQLite file path "
            "or a postgresql:// URL"
        )
    return target


def redact(target: str) -> str:
    """``target`` with any password in a URL replaced by ``***`` (safe to log)."""
    if "://" not in target:
        return target
    parts = urlsplit(target)
    if parts.password is not None:
        host = parts.netloc.rpartition("@")[2]
        parts = parts._replace(netloc=f"{parts.username or ''}:***@{host}")
    if "password=" in parts.query:
        query = "&".join(
            "password=***" if item.startswith("password=") else item
            for item in parts.query.split("&")
        )
        parts = parts._replace(query=query)
    return urlunsplit(parts)
