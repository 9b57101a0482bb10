"""Checkpoints of an interrupted run: paths, input fingerprint, atomic writes."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

import orjson

from ..errors import QingganError

CHECKPOINT_VERSION = 1


class ResumeError(QingganError):
    """A checkpoint is missing, unreadable or belongs to a different run."""


def partial_path(output: Path) -> Path:
    return output.with_name(output.name + ".partial")


def parts_path(output: Path) -> Path:
    return output.with_name(output.name + ".parts")


def checkpoint_path(output: Path) -> Path:
    return output.with_name(output.name + ".checkpoint.json")


def file_digest(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def fingerprint(input_path: str, options: dict[str, Any]) -> dict[str, Any]:
    """What must be unchanged for a run to be resumed: the input's content and the options."""
    return {
        "input": {"size": os.path.getsize(input_path), "sha256": file_digest(input_path)},
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
