"""The benchmark texts: real reviews read at bench time from ``*/test.csv.gz``.

Nothing from the data set is ever copied into the repository.
"""

from __future__ import annotations

import csv
import gzip
import os
import random
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("QINGGAN_DATA", REPO.parent / "shared" / "data"))
MAX_CHARS = 500  # the original answers 413 above 512 characters; keep every text servable


def load_texts(data_dir: Path, count: int, seed: int = 7) -> tuple[list[str], dict[str, Any]]:
    """``count`` review texts sampled at random (fixed seed) from every ``*/test.csv.gz``."""
    files = sorted(Path(data_dir).glob("*/test.csv.gz"))
    if not files:
        raise SystemExit(f"error: no */test.csv.gz under {data_dir} (pass --data)")
    texts: list[str] = []
    for file in files:
        with gzip.open(file, "rt", encoding="utf-8", newline="") as fh:
            texts += [
                row["text"] for row in csv.DictReader(fh) if 0 < len(row["text"]) <= MAX_CHARS
            ]
    sample = random.Random(seed).sample(texts, min(count, len(texts)))
    lengths = np.array([len(t) for t in sample])
    info = {
        "source": f"{data_dir}/*/test.csv.gz ({', '.join(f.parent.name for f in files)})",
        "count": len(sample),
        "max_chars": MAX_CHARS,
        "chars_median": float(np.median(lengths)),
        "chars_p95": float(np.percentile(lengths, 95)),
        "seed": seed,
    }
    return sample, info
