"""Scale-out on Ray: score a Ray Dataset, or a file, with a pool of actors.

Each actor is a :class:`BatchScorer`: it loads the bundle once and runs ONNX Runtime
with one thread (by default), so a pool of N actors uses N cores with no
oversubscription, on one machine or across a cluster. Two entry points:

* :func:`score_dataset` - Ray Data: ``ds.map_batches(BatchScorer, compute=ActorPoolStrategy)``,
  for data already in (or read by) Ray: ``ray.data.read_parquet("s3://...")`` and friends.
* :class:`RayChunkScorer` - ``qinggan predict --engine ray``: the file is read, written and
  checkpointed in the driver exactly as with the local engine (same formats, order and
  resume), and its chunks are scored by the actors, several in flight at a time.

The code runs unchanged on a local instance (``ray.init()``) and on a cluster
(``RAY_ADDRESS``, ``ray job submit``, KubeRay). Bundle paths must exist on every
worker; built-in models ship inside the package. Ray is the optional ``qinggan[ray]``
extra and is imported only here, lazily.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from .errors import MissingExtraError, QingganError
from .files import model_identity, score_texts
from .settings import env_long_texts

if TYPE_CHECKING:
    import ray.data

IN_FLIGHT_PER_ACTOR = 2
DEFAULT_BATCH_SIZE = 1024


def require_ray() -> Any:
    """Import ray, or raise :class:`MissingExtraError` naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise MissingExtraError("scaling out on Ray", "ray", "ray[data]") from None
    return ray


def model_spec(model: str | os.PathLike[str] | None) -> str | None:
    """A model spec that means the same on every worker: built-in names as they are,
    ``$QINGGAN_MODEL`` read here in the driver, paths made absolute."""
    from .bundle import builtin_models
    from .settings import env_model

    spec = str(model) if model not in (None, "") else env_model()
    if spec is None or spec in builtin_models():
        return spec
    path = Path(spec).expanduser()
    return str(path.resolve()) if path.exists() else spec


class BatchScorer:
    """A Ray Data callable class: loads the classifier once per actor, scores Arrow batches."""

    def __init__(
        self,
        model: str | None = None,
        *,
        text_column: str = "text",
        variant: str | None = None,
        threads: int = 1,
        prefix: str = "",
        fail_long: bool = False,
        long_texts: str | None = None,
    ) -> None:
        from .engine import load

        self.clf = load(model, variant=variant, threads=threads, long_texts=long_texts)
        self.text_column = text_column
        self.prefix = prefix
        self.fail_long = fail_long

    def describe(self) -> tuple[dict[str, Any], tuple[str, ...]]:
        """(resume identity, labels) of the loaded model."""
        return model_identity(self.clf), tuple(self.clf.labels)

    def score(
        self, values: Sequence[object], prefix: str | None = None, fail_long: bool | None = None
    ) -> pa.Table:
        """Prediction columns for raw text values (used by ``--engine ray``)."""
        return score_texts(
            self.clf,
            values,
            prefix=self.prefix if prefix is None else prefix,
            fail_long=self.fail_long if fail_long is None else fail_long,
        )

    def __call__(self, batch: pa.Table) -> pa.Table:
        if self.text_column in batch.column_names:
            values: list[object] = batch.column(self.text_column).to_pylist()
        else:
            values = [None] * batch.num_rows
        preds = self.score(values)
        for name, column in zip(preds.column_names, preds.columns, strict=True):
            batch = batch.append_column(name, column)
        return batch


def _pool_size(ray: Any, concurrency: int | None, threads: int) -> int:
    if concurrency is not None:
        return concurrency
    return max(1, int(ray.cluster_resources().get("CPU", 1) // threads))


def score_dataset(
    ds: ray.data.Dataset,
    model: str | os.PathLike[str] | None = None,
    text_column: str = "text",
    *,
    concurrency: int | tuple[int, int] | None = None,
    threads: int = 1,
    batch_size: int = DEFAULT_BATCH_SIZE,
    variant: str | None = None,
    prefix: str = "",
    fail_long: bool = False,
    long_texts: str | None = None,
) -> ray.data.Dataset:
    """Add prediction columns to every row of ``ds`` (lazily, like any Ray Data transform).

    ``concurrency`` is the actor-pool size: an int for a fixed pool, ``(min, max)`` to
    autoscale, ``None`` for ``(1, cluster CPUs / threads)``. A fixed pool that takes every
    CPU leaves none for Ray Data's read tasks and stalls; autoscaling avoids that. Each actor
    reserves ``threads`` CPUs and runs ONNX Runtime with that many threads. Rows whose
    text is missing, empty or not a string get an ``error`` value, as in ``qinggan
    predict --input``.
    """
    ray = require_ray()
    from ray.data import ActorPoolStrategy

    if not ray.is_initialized():
        ray.init()
    if concurrency is None:
        concurrency = (1, _pool_size(ray, None, threads))
    if isinstance(concurrency, tuple):
        compute = ActorPoolStrategy(min_size=concurrency[0], max_size=concurrency[1])
    else:
        compute = ActorPoolStrategy(size=concurrency)
    optional: dict[str, Any] = {}
    if "udf_modifying_row_count" in inspect.signature(ds.map_batches).parameters:
        optional["udf_modifying_row_count"] = False  # one output row per input row (Ray >= 2.5x)
    return ds.map_batches(
        BatchScorer,
        fn_constructor_kwargs={
            "model": model_spec(model),
            "text_column": text_column,
            "variant": variant,
            "threads": threads,
            "prefix": prefix,
            "fail_long": fail_long,
            "long_texts": long_texts or env_long_texts(),  # the driver's $QINGGAN_LONG_TEXTS
        },
        batch_format="pyarrow",
        batch_size=batch_size,
        compute=compute,
        num_cpus=threads,
        **optional,
    )


class RayChunkScorer:
    """``--engine ray``: an ordered map of text chunks over a pool of :class:`BatchScorer` actors.

    Chunks go to the actors round-robin with at most ``IN_FLIGHT_PER_ACTOR`` per actor
    outstanding, and results come back in input order, so memory stays bounded.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        variant: str | None = None,
        threads: int = 1,
        concurrency: int | None = None,
        long_texts: str | None = None,
    ) -> None:
        ray = require_ray()
        from .bundle import resolve_model

        spec = model_spec(model)
        resolve_model(spec)  # a missing model fails here, in the driver
        self._ray = ray
        self._started_ray = not ray.is_initialized()
        if self._started_ray:
            ray.init(include_dashboard=False, logging_level=logging.ERROR)
        size = _pool_size(ray, concurrency, threads)
        actor = ray.remote(num_cpus=threads)(BatchScorer)
        options = {"variant": variant, "threads": threads}
        options["long_texts"] = long_texts or env_long_texts()  # the driver's environment
        self.actors = [actor.remote(spec, **options) for _ in range(size)]
        # Ask an actor what it loaded: labels and identity exactly as the local engine sees them.
        self._identity, labels = self._get(self.actors[0].describe.remote())
        self.labels: tuple[str, ...] = tuple(labels)

    def identity(self) -> dict[str, Any]:
        return dict(self._identity)

    def _get(self, ref: Any) -> Any:
        try:
            return self._ray.get(ref)
        except self._ray.exceptions.RayError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, QingganError):
                raise cause from None
            raise QingganError(f"a Ray worker failed: {exc}") from None

    def map(
        self, chunks: Iterable[Sequence[object]], *, prefix: str = "", fail_long: bool = False
    ) -> Iterator[pa.Table]:
        window = IN_FLIGHT_PER_ACTOR * len(self.actors)
        pending: deque[Any] = deque()
        for index, values in enumerate(chunks):
            actor = self.actors[index % len(self.actors)]
            pending.append(actor.score.remote(list(values), prefix, fail_long))
            if len(pending) >= window:
                yield self._get(pending.popleft())
        while pending:
            yield self._get(pending.popleft())

    def close(self) -> None:
        """Stop the actors, and the local Ray instance if this object started it."""
        for actor in self.actors:
            self._ray.kill(actor)
        self.actors = []
        if self._started_ray:
            self._ray.shutdown()
