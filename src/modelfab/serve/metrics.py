"""Prometheus metrics of one server (its own CollectorRegistry, so several apps can coexist)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
UNKNOWN = "_unknown"  # model label for requests naming no hosted model (bounded cardinality)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "modelfab_requests", "Inference requests", ["model", "protocol", "code"], registry=r
        )
        self.latency = Histogram(
            "modelfab_request_latency_seconds",
            "Inference request latency, queueing included",
            ["model", "protocol"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.errors = Counter(
            "modelfab_errors", "Error responses by HTTP code", ["code"], registry=r
        )
        self.batch_size = Histogram(
            "modelfab_batch_size",
            "Texts per micro-batch",
            ["engine"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.batch_seconds = Histogram(
            "modelfab_batch_seconds",
            "Time to run one micro-batch",
            ["engine"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "modelfab_queue_depth", "Requests waiting per batcher", ["engine"], registry=r
        )
        self.models = Gauge("modelfab_models_loaded", "Models hosted", registry=r)
        self.engines = Gauge(
            "modelfab_engines_loaded",
            "Distinct graphs in memory (shared backbones once)",
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
