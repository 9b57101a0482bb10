"""Checkpoints of an interrupted run: paths, input fingerprint, atomic writes, and the
:class:`Checkpointer` that records how far a run got."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from ..bundle import sha256_file
from ..errors import QingganError

if TYPE_CHECKING:
    from .writers import Sink

CHECKPOINT_VERSION = 1


class ResumeError(QingganError):
    """A checkpoint is missing, unreadable or belongs to a different run."""


def partial_path(output: Path) -> Path:
    return output.with_name(output.name + ".partial")


def parts_path(output: Path) -> Path:
    return output.with_name(output.name + ".parts")


def checkpoint_path(output: Path) -> Path:
    return output.with_name(output.name + ".checkpoint.json")


def fingerprint(input_path: str, options: dict[str, Any]) -> dict[str, Any]:
    """What must be unchanged for a run to be resumed: the input's content and the options."""
    return {
        "input": {"size": os.path.getsize(input_path), "sha256": sha256_file(Path(input_path))},
        "options": options,
    }


def describe_mismatch(saved: dict[str, Any], current: dict[str, Any]) -> str:
    if saved.get("input") != current["input"]:
        return "the input file has changed since the interrupted run"
    changed = [
        f"{key} {saved.get('options', {}).get(key)!r} -> {value!r}"
        for key, value in current["options"].items()
        if saved.get("options", {}).get(key) != value
    ]
    return "options changed: " + ("; ".join(changed) or "unknown")


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(orjson.dumps(data, option=orjson.OPT_INDENT_2))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load_checkpoint(output: Path) -> dict[str, Any] | None:
    path = checkpoint_path(output)
    if not path.is_file():
        return None
    try:
        data = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError:
        raise ResumeError(
            f"checkpoint {path} is corrupt; delete it (or pass --no-resume) to start over"
        ) from None
    if not isinstance(data, dict) or data.get("version") != CHECKPOINT_VERSION:
        raise ResumeError(f"checkpoint {path} is from another qinggan version; pass --no-resume")
    return data


def clear_run_files(output: Path) -> None:
    """Remove every trace of an interrupted run for ``output``."""
    for path in (partial_path(output), checkpoint_path(output)):
        path.unlink(missing_ok=True)
    shutil.rmtree(parts_path(output), ignore_errors=True)


class Checkpointer:
    """What survives a crash: every ``every`` seconds (0: every chunk) the sink's data is
    made durable, then a checkpoint naming it replaces the last one atomically.

    Disabled (``fingerprint is None``) for stdin or stdout, which cannot be resumed.
    """

    def __init__(self, output: Path, fingerprint: dict[str, Any] | None, every: float) -> None:
        self.path = checkpoint_path(output)
        self.fingerprint = fingerprint
        self.every = every
        self.last = time.perf_counter()

    @property
    def enabled(self) -> bool:
        return self.fingerprint is not None

    def maybe_save(self, sink: Sink, counts: Mapping[str, int], now: float) -> None:
        """Save if ``every`` seconds have passed since the last save."""
        if self.enabled and now - self.last >= self.every:
            self.save(sink, counts)
            self.last = now

    def save(self, sink: Sink, counts: Mapping[str, int], *, finished: bool = False) -> None:
        """Record ``counts`` (rows, errors, truncated) and the sink's synced state;
        ``finished``: the input is exhausted and only the rename onto the output is left."""
        if not self.enabled:
            return
        state = sink.sync()
        write_json_atomic(
            self.path,
            {
                "version": CHECKPOINT_VERSION,
                "fingerprint": self.fingerprint,
                **counts,
                "sink": state,
                "finished": finished,
            },
        )

    def remove(self) -> None:
        """The output is complete: nothing is left to resume."""
        if self.enabled:
            self.path.unlink(missing_ok=True)
