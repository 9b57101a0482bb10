"""The embedded corrections store: one SQLite file in WAL mode.

WAL lets readers (stats, exports) run beside the writer; ``BEGIN IMMEDIATE`` plus a busy
timeout serialises writers from several processes (``--workers``, a CLI export, a second
server on the same file) without losing one; ``synchronous=FULL`` makes each commit
durable before the server answers 201. In one process, one connection behind a lock is
enough: corrections are rare next to analyses, and SQLite writes one at a time anyway.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

from . import schema
from .store import (
    SQLITE_PREFIX,
    Correction,
    FeedbackError,
    Stats,
    Store,
    StoreUnavailable,
    reason,
)

BUSY_TIMEOUT_MS = 10_000
EXPORT_BATCH = 1000


def sqlite_path(target: str) -> Path:
    """The file a SQLite target names: a plain path, ``sqlite:PATH`` or ``sqlite:///PATH``."""
    if target.startswith(SQLITE_PREFIX):
        target = target[len(SQLITE_PREFIX) :]
        if target.startswith("//"):
            target = target[2:]
    return Path(target).expanduser()


class SQLiteStore(Store):
    """Corrections in a SQLite file, created (with its schema) on first use."""

    def __init__(self, target: str, *, create: bool = True) -> None:
        self.path = sqlite_path(target)
        self.description = f"sqlite:{self.path}"
        self.create = create
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        if not self.create and not self.path.is_file():
            raise FeedbackError(f"no corrections store at {self.path}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                check_same_thread=False,
            )  # fmt: skip
        except (OSError, sqlite3.Error) as exc:
            raise StoreUnavailable(f"cannot open {self.path}: {reason(exc)}") from exc
        try:
            self._prepare(conn)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StoreUnavailable(f"cannot use {self.path}: {reason(exc)}") from exc
        except FeedbackError:
            conn.close()
            raise
        self._conn = conn
        return conn

    def _prepare(self, conn: sqlite3.Connection) -> None:
        """Pragmas, then the schema: created if absent, refused if newer than ours."""
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > schema.SCHEMA_VERSION:
            raise FeedbackError(
                f"{self.path} has corrections schema v{version}; this qinggan knows up to "
                f"v{schema.SCHEMA_VERSION} (upgrade qinggan)"
            )
        if version < schema.SCHEMA_VERSION:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(schema.SQLITE_DDL)
                conn.execute(f"PRAGMA user_version = {schema.SCHEMA_VERSION}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def open(self) -> None:
        with self._lock:
            self._connect()

    def record(self, correction: Correction) -> int:
        c = correction
        params = (
            schema.text_key(c.text), c.text, c.label, c.predicted, c.confidence, c.model,
            c.model_sha256, c.created_at, c.updated_at or c.created_at,
        )  # fmt: skip
        with self._lock:
            conn = self._connect()
            try:
                conn.execute("BEGIN IMMEDIATE")
                row_id = conn.execute(schema.SQLITE_UPSERT, params).fetchone()[0]
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback(conn)
                raise StoreUnavailable(f"could not store the correction: {reason(exc)}") from exc
        return int(row_id)

    @staticmethod
    def _rollback(conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # SQLite already rolled back (e.g. after SQLITE_FULL)

    def stats(self) -> Stats:
        with self._lock:
            conn = self._connect()
            try:
                conn.execute("BEGIN")  # one snapshot for both queries
                by_label = dict(conn.execute(schema.COUNT_BY_LABEL).fetchall())
                since = conn.execute(schema.FIRST_CREATED).fetchone()[0]
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback(conn)
                raise StoreUnavailable(f"could not read the corrections: {reason(exc)}") from exc
        return Stats(sum(by_label.values()), by_label, since)

    def corrections(self) -> Iterator[Correction]:
        # A connection of its own: a long export must not hold the writers' lock.
        reader = SQLiteStore(str(self.path), create=self.create)
        conn = reader._connect()
        try:
            cursor = conn.execute(schema.SELECT_ALL)
            while rows := cursor.fetchmany(EXPORT_BATCH):
                for row in rows:
                    yield Correction(**dict(zip(schema.COLUMNS, row, strict=True)))
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"could not read the corrections: {reason(exc)}") from exc
        finally:
            reader.close()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
