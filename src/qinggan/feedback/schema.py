"""The corrections table, its version, and the key that makes one row per distinct text.

Both back ends hold the same columns; only the SQL types differ. ``SCHEMA_VERSION`` is
stored in the database (SQLite: ``PRAGMA user_version``; PostgreSQL: the one-row table
``qinggan_schema``) so that a later release can migrate an existing store, and so that
an older release refuses a store written by a newer one instead of misreading it.
"""

from __future__ import annotations

import hashlib

SCHEMA_VERSION = 1
TABLE = "corrections"

# Column order of every read: Correction(*row) relies on it.
COLUMNS = (
    "id",
    "text",
    "label",
    "predicted",
    "confidence",
    "model",
    "model_sha256",
    "created_at",
    "updated_at",
    "revisions",
)

SQLITE_DDL = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    text_sha256  TEXT NOT NULL UNIQUE,
    text         TEXT NOT NULL,
    label        TEXT NOT NULL,
    predicted    TEXT,
    confidence   REAL,
    model        TEXT,
    model_sha256 TEXT,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    revisions    INTEGER NOT NULL DEFAULT 1
)
"""

POSTGRES_DDL = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    text_sha256  TEXT NOT NULL UNIQUE,
    text         TEXT NOT NULL,
    label        TEXT NOT NULL,
    predicted    TEXT,
    confidence   DOUBLE PRECISION,
    model        TEXT,
    model_sha256 TEXT,
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL,
    revisions    INTEGER NOT NULL DEFAULT 1
)
"""

# The same text corrected again keeps one row (and its id): the latest label and what the
# model answered then win; created_at stays, revisions counts the corrections. The
# placeholder style is the driver's: ``?`` for sqlite3, ``%s`` for psycopg.
_UPSERT = f"""
INSERT INTO {TABLE} (text_sha256, text, label, predicted, confidence, model, model_sha256,
                     created_at, updated_at)
VALUES ({{p}}, {{p}}, {{p}}, {{p}}, {{p}}, {{p}}, {{p}}, {{p}}, {{p}})
ON CONFLICT (text_sha256) DO UPDATE SET
    label = excluded.label,
    predicted = excluded.predicted,
    confidence = excluded.confidence,
    model = excluded.model,
    model_sha256 = excluded.model_sha256,
    updated_at = excluded.updated_at,
    revisions = {TABLE}.revisions + 1
RETURNING id
"""
SQLITE_UPSERT = _UPSERT.format(p="?")
POSTGRES_UPSERT = _UPSERT.format(p="%s")

SELECT_ALL = f"SELECT {', '.join(COLUMNS)} FROM {TABLE} ORDER BY id"
COUNT_BY_LABEL = f"SELECT label, COUNT(*) FROM {TABLE} GROUP BY label ORDER BY label"
FIRST_CREATED = f"SELECT MIN(created_at) FROM {TABLE}"


def text_key(text: str) -> str:
    """The row key of a text: its UTF-8 SHA-256 (hex), so the unique index stays small."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
