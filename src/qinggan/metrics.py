"""Prometheus metrics of the HTTP service (prometheus-client).

Each :class:`Metrics` owns its own registry, so several apps (tests) never collide.
Names follow text-embeddings-inference's split per stage: tokenization, queue and
inference time, batch size and tokens, queue depth, plus requests by route and status.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
TOKEN_BUCKETS = (16, 64, 256, 1024, 4096, 16384, 65536)


class Metrics:
    """The service's collectors, registered in a private :class:`CollectorRegistry`."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "qinggan_requests",
            "HTTP requests by route and status code",
            ["route", "status"],
            registry=r,
        )
        self.request_duration = Histogram(
            "qinggan_request_duration_seconds",
            "HTTP request latency by route",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tokenization_duration = Histogram(
            "qinggan_tokenization_duration_seconds",
            "Time to tokenise one request's texts",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_duration = Histogram(
            "qinggan_queue_duration_seconds",
            "Time a text waited before its batch started",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.inference_duration = Histogram(
            "qinggan_inference_duration_seconds",
            "Model time per batch",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "qinggan_batch_size", "Texts per model batch", buckets=BATCH_BUCKETS, registry=r
        )
        self.batch_tokens = Histogram(
            "qinggan_batch_tokens",
            "Padded tokens per model batch (texts x longest)",
            buckets=TOKEN_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge("qinggan_queue_depth", "Texts waiting for a batch", registry=r)
        self.dropped = Counter(
            "qinggan_dropped_texts",
            "Texts skipped before inference: client gone, deadline passed or request failed",
            ["reason"],
            registry=r,
        )
        self.rejected = Counter(
            "qinggan_rejected_requests", "Requests refused at admission", ["reason"], registry=r
        )
        self.batch_failures = Counter(
            "qinggan_batch_failures", "Model batches that raised an exception", registry=r
        )
        self.model = Gauge(
            "qinggan_model",
            "The model in service (1), by name and sha256",
            ["name", "sha256"],
            registry=r,
        )
        self.reloads = Counter(
            "qinggan_model_reloads",
            "Model reloads, by outcome (ok, failed)",
            ["outcome"],
            registry=r,
        )
        self.worker_alive = Gauge(
            "qinggan_worker_alive", "1 while the batching worker runs, else 0", registry=r
        )

    def set_model(self, name: str, sha256: str) -> None:
        """Show ``name``/``sha256`` as the one model in service."""
        self.model.clear()
        self.model.labels(name, sha256).set(1)

    def render(self) -> bytes:
        """The text exposition format of every metric."""
        return generate_latest(self.registry)
