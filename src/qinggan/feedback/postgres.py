"""The shared corrections store: PostgreSQL through psycopg 3.

Several replicas behind one load balancer write to one database. Row-level upserts on
the unique text key make concurrent corrections of the same text end in one row with
the last committed label; the schema is created under an advisory lock, so replicas
starting together do not race. A connection that breaks is dropped and reopened on the
next call; the call that saw it fail answers :class:`StoreUnavailable` (503).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from typing import Any

from ..errors import MissingExtraError
from . import schema
from .store import Correction, FeedbackError, Stats, Store, StoreUnavailable, iso, reason, redact

CONNECT_TIMEOUT_S = 5
STATEMENT_TIMEOUT_MS = 10_000
SCHEMA_LOCK = 0x71696E6767616E  # pg_advisory_xact_lock key: "qinggan" in hex
EXPORT_BATCH = 1000

VERSION_DDL = "CREATE TABLE IF NOT EXISTS qinggan_schema (version INTEGER NOT NULL)"


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise MissingExtraError("a PostgreSQL corrections store", "feedback", "psycopg") from None
    return psycopg


def _timestamp(value: str | None) -> dt.datetime:
    """An ISO 8601 time (as :func:`store.now` writes) for a TIMESTAMPTZ column."""
    return dt.datetime.fromisoformat(value) if value else dt.datetime.now(dt.timezone.utc)


class PostgresStore(Store):
    """Corrections in a PostgreSQL database (the table is created on first use)."""

    def __init__(self, url: str, *, create: bool = True) -> None:
        self.url = url
        self.description = redact(url)
        self.create = create
        self._psycopg = _psycopg()
        self._lock = threading.Lock()
        self._conn: Any = None

    def _connect(self) -> Any:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        pg = self._psycopg
        try:
            conn = pg.connect(
                self.url,
                connect_timeout=CONNECT_TIMEOUT_S,
                options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
                application_name="qinggan",
                autocommit=True,  # the only transactions are the explicit ones below
            )
        except pg.Error as exc:
            raise StoreUnavailable(f"cannot connect to {self.description}: {reason(exc)}") from exc
        try:
            self._prepare(conn)
        except pg.Error as exc:
            conn.close()
            raise StoreUnavailable(f"cannot use {self.description}: {reason(exc)}") from exc
        except FeedbackError:
            conn.close()
            raise
        self._conn = conn
        return conn

    def _prepare(self, conn: Any) -> None:
        with conn.transaction():
            exists = conn.execute("SELECT to_regclass('qinggan_schema')").fetchone()[0]
            if exists is None and not self.create:
                raise FeedbackError(f"no corrections store at {self.description}")
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            conn.execute(VERSION_DDL)
            row = conn.execute("SELECT max(version) FROM qinggan_schema").fetchone()
            version = row[0] or 0
            if version > schema.SCHEMA_VERSION:
                raise FeedbackError(
                    f"{self.description} has corrections schema v{version}; this qinggan "
                    f"knows up to v{schema.SCHEMA_VERSION} (upgrade qinggan)"
                )
            if version < schema.SCHEMA_VERSION:
                conn.execute(schema.POSTGRES_DDL)
                conn.execute("DELETE FROM qinggan_schema")
                conn.execute("INSERT INTO qinggan_schema VALUES (%s)", (schema.SCHEMA_VERSION,))

    def _run(self, what: str, work: Any) -> Any:
        """``work(conn)`` in one transaction; a failure rolls back and becomes a 503."""
        pg = self._psycopg
        with self._lock:
            conn = self._connect()
            try:
                with conn.transaction():
                    return work(conn)
            except pg.Error as exc:
                if conn.broken or conn.closed:
                    self._conn = None
                raise StoreUnavailable(f"could not {what}: {reason(exc)}") from exc

    def open(self) -> None:
        with self._lock:
            self._connect()

    def record(self, correction: Correction) -> int:
        c = correction
        created = _timestamp(c.created_at)
        params = (
            schema.text_key(c.text), c.text, c.label, c.predicted, c.confidence, c.model,
            c.model_sha256, created, _timestamp(c.updated_at) if c.updated_at else created,
        )  # fmt: skip
        row_id = self._run(
            "store the correction",
            lambda conn: conn.execute(schema.POSTGRES_UPSERT, params).fetchone()[0],
        )
        return int(row_id)

    def stats(self) -> Stats:
        def read(conn: Any) -> Stats:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            by_label = dict(conn.execute(schema.COUNT_BY_LABEL).fetchall())
            since = conn.execute(schema.FIRST_CREATED).fetchone()[0]
            return Stats(sum(by_label.values()), by_label, iso(since))

        stats: Stats = self._run("read the corrections", read)
        return stats

    def corrections(self) -> Iterator[Correction]:
        # Its own connection and a server-side cursor: the export streams, writers go on.
        reader = PostgresStore(self.url, create=self.create)
        pg = self._psycopg
        try:
            conn = reader._connect()
            with conn.transaction(), conn.cursor(name="qinggan_export") as cursor:
                cursor.execute(schema.SELECT_ALL)
                while rows := cursor.fetchmany(EXPORT_BATCH):
                    for row in rows:
                        record = dict(zip(schema.COLUMNS, row, strict=True))
                        record["created_at"] = iso(record["created_at"])
                        record["updated_at"] = iso(record["updated_at"])
                        yield Correction(**record)
        except pg.Error as exc:
            raise StoreUnavailable(f"could not read the corrections: {reason(exc)}") from exc
        finally:
            reader.close()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
