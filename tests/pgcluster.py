"""A throw-away PostgreSQL cluster for the corrections-store tests.

``python3 tests/pgcluster.py start DIR`` initialises a cluster in DIR, starts it on a
free 127.0.0.1 port (trust auth, nothing else listening) and prints
``export QINGGAN_TEST_POSTGRES_URL=...`` for a shell to ``eval``; ``stop DIR`` stops it.
.ci/run uses these; the tests' fixture calls :func:`start` itself when no URL is given.
PostgreSQL refuses to run as root, so under root the cluster runs as the ``postgres``
user (Debian's package creates it) or ``nobody``. Standard library only: it runs before
the virtual environment exists.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
from pathlib import Path

URL_ENV = "QINGGAN_TEST_POSTGRES_URL"
SUPERUSER = "qinggan"


def bin_dir() -> Path | None:
    """Where initdb and pg_ctl are: on PATH, else Debian's newest /usr/lib/postgresql/*/bin."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    return Path(candidates[-1]).parent if candidates else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_owner(command: list[str], data: Path) -> list[str]:
    """``command`` run as a non-root user when we are root (initdb refuses root)."""
    if os.geteuid() != 0:
        return command
    for user in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            continue
        for path in (data.parent, data):
            if path.exists():
                os.chown(path, entry.pw_uid, entry.pw_gid)
        return ["runuser", "-u", user, "--", *command]
    raise RuntimeError("running as root and no 'postgres' or 'nobody' user to run PostgreSQL")


def start(root: Path, *, fsync: bool = False) -> str:
    """Initialise and start a cluster under ``root``; its superuser URL. Tests run without
    fsync (throw-away data); benchmarks ask for it, as a real server has it."""
    binaries = bin_dir()
    if binaries is None:
        raise RuntimeError("PostgreSQL's initdb was not found (apt-get install postgresql)")
    root.mkdir(parents=True, exist_ok=True)
    data = root / "data"
    data.mkdir(exist_ok=True)
    port = _free_port()
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.STDOUT}
    initdb = [str(binaries / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust"]
    subprocess.run(_as_owner([*initdb, "--encoding=UTF8", "--locale=C"], data), check=True, **quiet)
    options = (
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync={'on' if fsync else 'off'}"
    )
    pg_ctl = [str(binaries / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w"]
    subprocess.run(_as_owner([*pg_ctl, "-o", options, "start"], data), check=True, **quiet)
    return f"postgresql://{SUPERUSER}@127.0.0.1:{port}/postgres"


def stop(root: Path) -> None:
    """Stop the cluster under ``root`` (fast shutdown) and delete its files."""
    binaries = bin_dir()
    data = root / "data"
    if binaries is not None and (data / "postmaster.pid").exists():
        command = [str(binaries / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]
        subprocess.run(_as_owner(command, data), check=False, capture_output=True)
    shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in ("start", "stop"):
        print(f"usage: {argv[0]} start|stop DIR", file=sys.stderr)
        return 2
    root = Path(argv[2]).resolve()
    if argv[1] == "start":
        print(f"export {URL_ENV}={start(root)}")
    else:
        stop(root)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
