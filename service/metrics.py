"""Prometheus metrics of the service, and their exposition.

Under gunicorn the config sets ``PROMETHEUS_MULTIPROC_DIR`` before this module (and so
prometheus_client) is imported; prometheus_client then keeps every value in a per-process file,
and a scrape of any worker aggregates all of them. Without it, the default registry of this
process is exposed.

The model label is only ever a model the registry knows (or "" when the lookup failed), so
clients cannot grow the label set by asking for made-up model names.
"""

from __future__ import annotations

import os
from functools import lru_cache
from time import perf_counter
from typing import TYPE_CHECKING, Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, multiprocess
from prometheus_client.exposition import choose_encoder

if TYPE_CHECKING:
    from service.runtime import OnnxModel

_LABELS = ("model", "version", "protocol")

REQUESTS = Counter("surrogate_requests", "Inference requests handled.", _LABELS)
FAILURES = Counter(
    "surrogate_request_failures", "Inference requests answered with an error.", _LABELS
)
ROWS = Counter("surrogate_rows_predicted", "Rows (samples) predicted.", ("model", "version"))
LATENCY = Histogram(
    "surrogate_request_duration_seconds",
    "Time from the request reaching the view to its response being built.",
    ("model", "protocol"),
    buckets=(0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0),
)
BATCH_ROWS = Histogram(
    "surrogate_batch_rows",
    "Rows per inference request.",
    ("model",),
    buckets=tuple(float(4**k) for k in range(9)),
)
OUT_OF_DOMAIN = Counter(
    "surrogate_out_of_domain_rows",
    "Rows with an input outside the model's training range (counted under every policy but "
    "ignore, which does not check).",
    ("model", "version"),
)
LOAD_FAILURES = Counter(
    "surrogate_model_load_failures", "Model versions that failed to load.", ("model",)
)


class RequestTimer:
    """Context manager around one inference request; records it on exit.

    ``bind`` it to the model once the registry returned one, and set ``rows`` once known.
    """

    __slots__ = ("protocol", "model", "version", "rows", "_start")

    def __init__(self, protocol: str) -> None:
        self.protocol = protocol
        self.model = ""
        self.version = ""
        self.rows = 0

    def bind(self, model: OnnxModel) -> None:
        self.model, self.version = model.name, str(model.version)

    def __enter__(self) -> RequestTimer:
        self._start = perf_counter()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        requests, failures, rows, batch_rows, latency = _series(
            self.model, self.version, self.protocol
        )
        requests.inc()
        if exc_type is not None:
            failures.inc()
        else:
            rows.inc(self.rows)
            batch_rows.observe(self.rows)
        latency.observe(perf_counter() - self._start)


@lru_cache(maxsize=4096)
def _series(model: str, version: str, protocol: str) -> tuple[Any, ...]:
    """The labelled children of one (model, version, protocol): looked up once, not per request."""
    return (
        REQUESTS.labels(model, version, protocol),
        FAILURES.labels(model, version, protocol),
        ROWS.labels(model, version),
        BATCH_ROWS.labels(model),
        LATENCY.labels(model, protocol),
    )


def record_out_of_domain(model: OnnxModel, rows: int) -> None:
    OUT_OF_DOMAIN.labels(model.name, str(model.version)).inc(rows)


def record_load_failure(model: str) -> None:
    LOAD_FAILURES.labels(model).inc()


def exposition(accept: str | None) -> tuple[bytes, str]:
    """The current metrics in the format ``accept`` asks for (Prometheus text by default)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type
