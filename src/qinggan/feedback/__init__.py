"""Corrections from the service's users, kept in SQLite or PostgreSQL for ``qinggan adapt``.

Off by default (the service keeps no user text unless asked): ``qinggan serve
--feedback-db TARGET``. ``open_store`` picks the back end from the target;
``iter_corrections`` is what training code reads.
"""

from __future__ import annotations

from collections.abc import Iterator

from .store import (
    Correction,
    FeedbackError,
    Stats,
    Store,
    StoreUnavailable,
    check_target,
    is_postgres,
    now,
    redact,
)

__all__ = [
    "Correction",
    "FeedbackError",
    "Stats",
    "Store",
    "StoreUnavailable",
    "iter_corrections",
    "now",
    "open_store",
    "redact",
]


def open_store(target: str, *, create: bool = True) -> Store:
    """The store ``target`` names (not yet connected: call ``open()`` or use ``with``).

    ``create=False`` (exports, stats, training) refuses a target that holds no store
    instead of creating an empty one.
    """
    check_target(target)
    if is_postgres(target):
        from .postgres import PostgresStore

        return PostgresStore(target, create=create)
    from .sqlite import SQLiteStore

    return SQLiteStore(target, create=create)


def iter_corrections(target: str) -> Iterator[tuple[str, str]]:
    """Every stored ``(text, label)`` pair of the store at ``target``, oldest first.

    Raises :class:`FeedbackError` if there is no store there, :class:`StoreUnavailable`
    if it cannot be read.
    """
    with open_store(target, create=False) as store:
        for correction in store.corrections():
            yield correction.text, correction.label
