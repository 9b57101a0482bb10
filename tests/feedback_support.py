"""Fixtures of the corrections-store tests: a SQLite file and a real PostgreSQL database.

PostgreSQL comes from ``QINGGAN_TEST_POSTGRES_URL`` (``.ci/run`` starts a throw-away
cluster and sets it); without it, a cluster is started here when PostgreSQL's binaries
are installed, and the tests that need it skip, saying why, when neither works. Every
test gets a database of its own, dropped afterwards.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

import pgcluster


def _connect(url: str) -> object:
    psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed (the feedback extra)")
    return psycopg.connect(url, autocommit=True, connect_timeout=5)


_STARTED: list[str] = []  # the URL of the cluster this session started, shared by modules


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A superuser URL of a running PostgreSQL server."""
    url = os.environ.get(pgcluster.URL_ENV) or (_STARTED[0] if _STARTED else None)
    root = None
    if not url:
        if pgcluster.bin_dir() is None:
            pytest.skip(
                f"no PostgreSQL: set {pgcluster.URL_ENV} or install it (apt-get install postgresql)"
            )
        root = Path(tempfile.mkdtemp(prefix="qinggan-pg-"))
        try:
            url = pgcluster.start(root)
        except Exception as exc:  # noqa: BLE001 - any failure means: skip, saying why
            pgcluster.stop(root)
            pytest.skip(f"could not start a throw-away PostgreSQL cluster: {exc}")
        _STARTED.append(url)
    try:
        _connect(url).close()  # type: ignore[attr-defined]
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"PostgreSQL at {url} cannot be reached: {exc}")
    yield url
    if root is not None:  # session teardown: every module using it is done
        pgcluster.stop(root)


@pytest.fixture
def pg_url(postgres_server: str) -> Iterator[str]:
    """The URL of a fresh, empty database, dropped after the test."""
    name = f"qinggan_{uuid.uuid4().hex[:12]}"
    admin = _connect(postgres_server)
    admin.execute(f"CREATE DATABASE {name}")  # type: ignore[attr-defined]
    parts = urlsplit(postgres_server)
    yield urlunsplit(parts._replace(path=f"/{name}"))
    admin.execute(f"DROP DATABASE {name} WITH (FORCE)")  # type: ignore[attr-defined]
    admin.close()  # type: ignore[attr-defined]


@pytest.fixture(params=["sqlite", "postgres"])
def store_target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each back end in turn: a SQLite path (not yet created) or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "corrections.db")
    return str(request.getfixturevalue("pg_url"))
