"""The corrections store on SQLite and on a real PostgreSQL: upserts, schema versions,
concurrent writers, failures that store nothing, exports and the ``qinggan feedback`` CLI."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import feedback_support
from qinggan.cli import app
from qinggan.feedback import (
    Correction,
    FeedbackError,
    StoreUnavailable,
    iter_corrections,
    now,
    open_store,
    redact,
)
from qinggan.feedback.sqlite import SQLiteStore
from qinggan.settings import Settings, SettingsError

# The shared fixtures (a SQLite path, a fresh PostgreSQL database, both in turn).
postgres_server = feedback_support.postgres_server
pg_url = feedback_support.pg_url
store_target = feedback_support.store_target

SRC = str(Path(__file__).resolve().parents[1] / "src")


def correction(text: str, label: str = "Positive", **fields: object) -> Correction:
    return Correction(text, label, created_at=now(), **fields)  # type: ignore[arg-type]


def test_same_text_keeps_one_row_with_the_latest_label(store_target: str) -> None:
    with open_store(store_target) as store:
        first = store.record(correction("房间很干净", "Positive", predicted="Negative"))
        other = store.record(correction("太差了", "Negative"))
        again = store.record(
            correction("房间很干净", "Negative", predicted="Positive", confidence=0.75, model="m")
        )
        assert again == first != other
        stats = store.stats()
        rows = list(store.corrections())
    assert (stats.count, stats.by_label) == (2, {"Negative": 2})
    assert stats.since == rows[0].created_at
    assert [(r.text, r.label, r.revisions) for r in rows] == [
        ("房间很干净", "Negative", 2),
        ("太差了", "Negative", 1),
    ]
    assert (rows[0].predicted, rows[0].confidence, rows[0].model) == ("Positive", 0.75, "m")
    assert rows[0].updated_at >= rows[0].created_at  # type: ignore[operator]
    assert list(iter_corrections(store_target)) == [
        ("房间很干净", "Negative"),
        ("太差了", "Negative"),
    ]


def test_an_empty_store_has_no_stats(store_target: str) -> None:
    with open_store(store_target) as store:
        stats = store.stats()
    assert stats.to_dict() == {"count": 0, "by_label": {}, "since": None}


def test_readers_refuse_a_missing_store_instead_of_creating_one(tmp_path: Path) -> None:
    missing = tmp_path / "none.db"
    with pytest.raises(FeedbackError, match="no corrections store"):
        list(iter_corrections(str(missing)))
    assert not missing.exists()


def test_postgres_readers_refuse_a_database_without_the_store(pg_url: str) -> None:
    with pytest.raises(FeedbackError, match="no corrections store"):
        list(iter_corrections(pg_url))


def test_sqlite_store_is_wal_and_versioned(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "fb.db"
    with open_store(f"sqlite:///{path}") as store:
        store.record(correction("好"))
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(FeedbackError, match="schema v99"):
        open_store(str(path)).open()


def test_postgres_store_refuses_a_newer_schema(pg_url: str) -> None:
    with open_store(pg_url) as store:
        store.record(correction("好"))
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE qinggan_schema SET version = 99")
    with pytest.raises(FeedbackError, match="schema v99"):
        open_store(pg_url).open()


TEXTS = [f"评论{i}" for i in range(40)]


def _write_all(store_factory, writers: int) -> None:  # type: ignore[no-untyped-def]
    """``writers`` threads, each correcting every text of TEXTS plus some of its own."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(writers)

    def work(n: int) -> None:
        store = store_factory()
        try:
            barrier.wait()
            for i, text in enumerate(TEXTS):
                store.record(correction(text, "Positive" if (i + n) % 2 else "Negative"))
                store.record(correction(f"只有{n}-{i}", "Negative"))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors


def _assert_nothing_lost(target: str, writers: int) -> None:
    with open_store(target, create=False) as store:
        rows = list(store.corrections())
        stats = store.stats()
    shared = [r for r in rows if r.text in TEXTS]
    assert len(rows) == stats.count == len(TEXTS) * (writers + 1)
    assert len({r.text for r in rows}) == len(rows)  # no duplicated text
    assert len({r.id for r in rows}) == len(rows)
    assert all(r.revisions == writers for r in shared)  # every correction counted once
    assert sum(r.revisions for r in rows) == 2 * writers * len(TEXTS)


def test_threads_sharing_one_store_lose_nothing(store_target: str) -> None:
    with open_store(store_target) as shared:
        _write_all(lambda: shared, writers=6)
    _assert_nothing_lost(store_target, 6)


def test_separate_connections_lose_nothing(store_target: str) -> None:
    stores = []

    def new_store():  # type: ignore[no-untyped-def]
        store = open_store(store_target)
        stores.append(store)
        return store

    _write_all(new_store, writers=6)
    for store in stores:
        store.close()
    _assert_nothing_lost(store_target, 6)


WRITER = """
import sys
from qinggan.feedback import Correction, now, open_store
target, n = sys.argv[1], int(sys.argv[2])
with open_store(target) as store:
    for i in range(40):
        label = "Positive" if (i + n) % 2 else "Negative"
        store.record(Correction(f"评论{i}", label, created_at=now()))
        store.record(Correction(f"只有{n}-{i}", "Negative", created_at=now()))
"""


def test_processes_writing_one_sqlite_file_lose_nothing(tmp_path: Path) -> None:
    target = str(tmp_path / "shared.db")
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, target, str(n)], env={"PYTHONPATH": SRC})
        for n in range(4)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    _assert_nothing_lost(target, 4)


class _LimitedStore(SQLiteStore):
    """A SQLite store whose connection has a page budget (a full disk) or is read-only."""

    def __init__(self, target: str, pragma: str) -> None:
        super().__init__(target)
        self.pragma = pragma

    def _prepare(self, conn: sqlite3.Connection) -> None:
        super()._prepare(conn)
        conn.execute(self.pragma)


@pytest.mark.parametrize("pragma", ["PRAGMA max_page_count = 8", "PRAGMA query_only = ON"])
def test_a_failed_write_stores_nothing_and_reads_go_on(tmp_path: Path, pragma: str) -> None:
    target = str(tmp_path / "fb.db")
    with open_store(target) as store:
        store.record(correction("第一条"))
    limited = _LimitedStore(target, pragma)
    with pytest.raises(StoreUnavailable, match="could not store"):
        for i in range(2000):  # a full disk: fills up within a few writes
            limited.record(correction(f"很长的评论{i}" * 100))
    stats = limited.stats()
    stored = {c.text for c in limited.corrections()}
    limited.close()
    assert stats.count == len(stored)
    with open_store(target) as store:
        assert {c.text for c in store.corrections()} == stored  # the failed one is not there
        store.record(correction("恢复后"))  # the same file takes writes again
        assert store.stats().count == stats.count + 1


def test_an_unreachable_postgres_is_unavailable_not_a_crash() -> None:
    pytest.importorskip("psycopg")
    store = open_store("postgresql://nobody:secret@127.0.0.1:1/none")
    with pytest.raises(StoreUnavailable, match="cannot connect") as info:
        store.record(correction("好"))
    assert "secret" not in str(info.value)
    assert "\n" not in str(info.value)


def test_postgres_reconnects_after_its_connection_dies(pg_url: str) -> None:
    import psycopg

    with open_store(pg_url) as store:
        store.record(correction("一"))
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'qinggan'"
            )
        with pytest.raises(StoreUnavailable):
            store.record(correction("二"))
        store.record(correction("三"))
        assert sorted(c.text for c in store.corrections()) == ["一", "三"]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(texts=st.lists(st.text(st.characters(exclude_characters="\x00"), min_size=1), max_size=8))
def test_any_text_round_trips(tmp_path: Path, texts: list[str]) -> None:
    target = tmp_path / f"{abs(hash(tuple(texts)))}.db"
    target.unlink(missing_ok=True)
    with open_store(str(target)) as store:
        for text in texts:
            store.record(correction(text))
        assert {c.text for c in store.corrections()} == set(texts)
        assert store.stats().count == len(set(texts))
    target.unlink()


@pytest.mark.parametrize(
    ("target", "shown"),
    [
        ("postgresql://u:pw@db:5432/x", "postgresql://u:***@db:5432/x"),
        ("postgresql://db/x", "postgresql://db/x"),
        (
            "postgresql://u@db/x?sslmode=require&password=pw",
            "postgresql://u@db/x?sslmode=require&password=***",
        ),
        ("/var/lib/fb.db", "/var/lib/fb.db"),
    ],
)
def test_passwords_never_show(target: str, shown: str) -> None:
    assert redact(target) == shown
    settings_ = Settings(feedback_db=target)
    assert "pw" not in repr(settings_)
    assert settings_.redacted()["feedback_db"] == shown


@pytest.mark.parametrize("target", ["mysql://db/x", "  "])
def test_unsupported_targets_are_a_settings_error(target: str) -> None:
    with pytest.raises(SettingsError, match="feedback_db"):
        Settings.resolve(
            environ={"QINGGAN_FEEDBACK_DB": target} if target.strip() else {},
            overrides={"feedback_db": target},
        )


# ---------- exports and the CLI ----------


@pytest.fixture
def filled(store_target: str) -> str:
    with open_store(store_target) as store:
        store.record(correction("好极了", "Positive", predicted="Negative", confidence=0.6))
        store.record(correction('含,逗号 "引号"\n换行', "Negative"))
    return store_target


def _read(path: Path) -> list[dict[str, object]]:
    if path.suffix == ".parquet":
        return pq.read_table(path).to_pylist()
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    delimiter = "\t" if path.suffix == ".tsv" else ","
    options = pa_csv.ParseOptions(delimiter=delimiter, newlines_in_values=True)
    return pa_csv.read_csv(path, parse_options=options).to_pylist()


@pytest.mark.parametrize("ext", ["csv", "tsv", "jsonl", "parquet"])
def test_export_writes_text_label_and_the_record(filled: str, tmp_path: Path, ext: str) -> None:
    out = tmp_path / f"out.{ext}"
    result = CliRunner().invoke(app, ["feedback", "export", filled, "-o", str(out)])
    assert result.exit_code == 0, result.output
    rows = _read(out)
    assert list(rows[0])[:2] == ["text", "label"]
    assert {"predicted", "confidence", "model", "model_sha256", "created_at"} <= set(rows[0])
    assert [(r["text"], r["label"]) for r in rows] == [
        ("好极了", "Positive"),
        ('含,逗号 "引号"\n换行', "Negative"),
    ]
    assert rows[0]["predicted"] == "Negative" and rows[0]["confidence"] == pytest.approx(0.6)
    assert not out.with_name(out.name + ".partial").exists()


def test_export_to_stdout_is_json_lines(filled: str) -> None:
    result = CliRunner().invoke(app, ["feedback", "export", filled, "-o", "-"])
    assert result.exit_code == 0
    assert [json.loads(line)["text"] for line in result.stdout.splitlines()] == [
        "好极了",
        '含,逗号 "引号"\n换行',
    ]


def test_stats_command(filled: str) -> None:
    result = CliRunner().invoke(app, ["feedback", "stats", filled, "--json"])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert (data["count"], data["by_label"]) == (2, {"Negative": 1, "Positive": 1})
    text = CliRunner().invoke(app, ["feedback", "stats", filled]).stdout
    assert "corrections: 2" in text and "Positive: 1" in text


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "qinggan.cli", "feedback", *args]
    return subprocess.run(command, capture_output=True, text=True, env={"PYTHONPATH": SRC})


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("stats", "{tmp}/missing.db"), "error: no corrections store at"),
        (("export", "{tmp}/missing.db", "-o", "{tmp}/x.csv"), "error: no corrections store"),
        (("export", "{db}", "-o", "{tmp}/x.txt"), "error: cannot export to txt"),
        (("export", "{db}", "-o", "{tmp}/no/dir/x.csv"), "error: cannot write"),
        (("stats", "mysql://db/x"), "error: unsupported corrections store"),
        (("stats", "postgresql://u:secret@127.0.0.1:1/x"), "error: cannot connect"),
    ],
)
def test_cli_mistakes_are_one_line_errors(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    db = tmp_path / "fb.db"
    with open_store(str(db)) as store:
        store.record(correction("好"))
    result = _cli(*(a.format(tmp=tmp_path, db=db) for a in args))
    assert result.returncode == 1, result
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1, result.stderr
    assert "secret" not in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "x.txt").exists()


def test_cli_usage_error_exits_2(tmp_path: Path) -> None:
    assert _cli("export", str(tmp_path / "fb.db")).returncode == 2  # no -o
