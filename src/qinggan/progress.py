"""Progress display for long jobs: a rich progress bar on a terminal, nothing elsewhere.

The bar runs on stderr and only when stderr is a TTY (and the caller did not ask for
quiet), so logs and pipes stay clean. It shows rows done, rows/s, elapsed time and,
when the total number of rows is known, the bar and an ETA.
"""

from __future__ import annotations

import sys
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class RowProgress:
    """A context manager that shows rows done, rows/s and an ETA while a file is scored."""

    def __init__(self, description: str, total: int | None, *, enabled: bool = True) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.rows = 0
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        if self.enabled:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[rows]:>10,} rows"),
                TextColumn("{task.fields[rate]:>8,.0f} rows/s"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._task = self._progress.add_task(description, total=total, rows=0, rate=0.0)

    def __enter__(self) -> RowProgress:
        if self._progress is not None:
            self._progress.start()
        return self

    def update(self, rows: int, rate: float) -> None:
        """Show ``rows`` done (of ``total``) at ``rate`` rows/s."""
        self.rows = rows
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=rows, rows=rows, rate=rate)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
