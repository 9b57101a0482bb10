"""The error every user mistake in ``qinggan adapt`` raises (one ``error:`` line, exit 1)."""

from __future__ import annotations

from ..errors import QingganError


class AdaptError(QingganError):
    """The data, the options or OUT do not allow adapting; the message says why."""
