"""The corrections store as the server uses it: its blocking calls on a thread of its own.

Off the event loop, and out of the default executor (which tokenises big requests), so
a slow or hung store never delays an analysis. One thread is enough: each store has one
connection. The worker also counts writes for ``/metrics``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter

from . import open_store
from .store import Store, StoreUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")


class StoreWorker:
    """A store, its thread and its write counter."""

    def __init__(self, store: Store, registry: CollectorRegistry | None = None) -> None:
        self.store = store
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qinggan-feedback")
        self.writes = Counter(
            "qinggan_feedback_writes",
            "Corrections stored (ok) or refused because the store failed (failed)",
            ["outcome"],
            registry=registry,
        )

    @classmethod
    def configured(
        cls, target: str | None, registry: CollectorRegistry | None = None
    ) -> StoreWorker | None:
        """The worker for ``--feedback-db TARGET``; ``None`` when corrections are off."""
        return cls(open_store(target), registry) if target else None

    async def run(self, call: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, call, *args)

    async def open(self) -> None:
        """Connect at startup; a store that is down now only makes its routes answer 503."""
        try:
            await self.run(self.store.open)
            log.info("corrections are stored in %s", self.store.description)
        except StoreUnavailable as exc:
            log.warning("corrections store unavailable for now (503 until it is back): %s", exc)

    async def close(self) -> None:
        await self.run(self.store.close)
        self._pool.shutdown(wait=False)
