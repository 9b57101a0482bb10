"""The before/after table: accuracy, macro-F1 and ECE of the base and the adapted model on
the validation rows (and on ChnSentiCorp's test split with ``--data-dir``, to show what the
general model forgot)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np

from ..evaluate import probs_metrics

COLUMNS = ("accuracy", "macro_f1", "ece")


def scores(labels: Sequence[int] | np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    """The numbers the table shows (and the manifest keeps) for one model on one set."""
    m = asdict(probs_metrics(labels, probs))
    return {"n": m["n"], **{k: round(m[k], 4) for k in COLUMNS}, "confusion": m["confusion"]}


def table_rows(report: dict[str, dict[str, Any]]) -> list[list[str]]:
    """``[set, model, n, acc %, macro-F1 %, ECE %]`` rows of a report."""
    rows = []
    for set_name, models in report.items():
        for model, m in models.items():
            if m is None:
                rows.append([set_name, model, "-", "-", "-", "-"])
                continue
            rows.append([set_name, model, str(m["n"]),
                         *(f"{100 * m[k]:.2f}" for k in COLUMNS)])  # fmt: skip
    return rows


def print_table(report: dict[str, dict[str, Any]], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for i, col in enumerate(("set", "model", "n", "acc %", "macro-F1 %", "ECE %")):
        table.add_column(col, justify="left" if i < 2 else "right")
    for row in table_rows(report):
        table.add_row(*row)
    Console().print(table)
