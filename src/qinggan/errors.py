"""Exception types shared by every qinggan module.

Every error a user can cause derives from :class:`QingganError`, so the CLI and the
server can turn it into a one-line message instead of a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable


class QingganError(Exception):
    """Base class for errors caused by input, configuration or a bad model bundle."""


class BundleError(QingganError):
    """A model bundle is missing, incomplete, tampered with or inconsistent."""


class TextTooLongError(QingganError):
    """A text has more tokens than the model accepts and truncation is disabled."""

    def __init__(self, index: int, tokens: int, limit: int) -> None:
        super().__init__(
            f"text #{index} has {tokens} tokens, more than the model's limit of {limit} "
            "(enable truncation to score it anyway)"
        )
        self.index = index
        self.tokens = tokens
        self.limit = limit


class MissingExtraError(QingganError):
    """An optional feature needs an extra that is not installed."""

    def __init__(self, feature: str, extra: str, module: str) -> None:
        super().__init__(f"{feature} needs the '{module}' package: pip install 'qinggan[{extra}]'")
        self.extra = extra


def run_main(main: Callable[[], object]) -> None:
    """Run a command's entry point as users expect: a :class:`QingganError` prints one line
    ``error: ...`` and exits 1, Ctrl+C exits 130, and a closed output pipe exits 0."""
    try:
        main()
    except QingganError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except BrokenPipeError:
        raise SystemExit(0) from None
