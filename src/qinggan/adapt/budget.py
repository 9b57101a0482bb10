"""The time budget of one adapt run (``--minutes``) and the progress bar that shows it.

Like :class:`qinggan.progress.RowProgress`, the bar draws on stderr and only on a terminal.
Optional steps (the ChnSentiCorp comparison) are skipped once the budget is spent.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn


class Budget:
    """Steps done out of ``steps``, and the seconds left of ``minutes``."""

    def __init__(self, minutes: float, steps: int, *, enabled: bool = True) -> None:
        self.seconds = minutes * 60.0
        self.started = time.monotonic()
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        if enabled and sys.stderr.isatty():
            self._progress = Progress(
                TextColumn("adapt: {task.description:<28}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total} steps"),
                TimeElapsedColumn(),
                TextColumn("budget left {task.fields[left]}"),
                console=Console(stderr=True),
            )
            self._task = self._progress.add_task("starting", total=steps, left=self._left())

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def left(self) -> float:
        return self.seconds - self.elapsed

    def _left(self) -> str:
        left = max(0, int(self.left))
        return f"{left // 60}:{left % 60:02d}"

    def step(self, description: str) -> None:
        """Start the step ``description`` (the previous one is done)."""
        if self._progress is not None and self._task is not None:
            task = self._progress.tasks[0]
            done = task.completed + (1 if task.description != "starting" else 0)
            self._progress.update(
                self._task, description=description, completed=done, left=self._left()
            )

    def __enter__(self) -> Budget:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            if exc_type is None and self._task is not None:
                total = self._progress.tasks[0].total or 0
                self._progress.update(self._task, completed=total, left=self._left())
            self._progress.stop()
