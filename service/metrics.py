"""Prometheus metrics of the service, and their exposition.

Under gunicorn the config sets ``PROMETHEUS_MULTIPROC_DIR`` before this module (and so
prometheus_client) is imported; prometheus_client then keeps every value in a per-process file,
and a scrape of any worker aggregates all of them. Without it, the default registry of this
process is exposed.

The model label is only ever a model the registry knows (or "" when the lookup failed), so
clients cannot grow the label set by asking for made-up model names.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from bisect import bisect_left
from collections import deque
from functools import lru_cache
from time import perf_counter
from typing import TYPE_CHECKING, Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, multiprocess
from prometheus_client.exposition import choose_encoder

if TYPE_CHECKING:
    from service.runtime import OnnxModel

log = logging.getLogger("service.metrics")

_LABELS = ("model", "version", "protocol")

REQUESTS = Counter("surrogate_requests", "Inference requests handled.", _LABELS)
FAILURES = Counter(
    "surrogate_request_failures", "Inference requests answered with an error.", _LABELS
)
ROWS = Counter("surrogate_rows_predicted", "Rows (samples) predicted.", ("model", "version"))
_LATENCY_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0,
                    2.0, 5.0)
_BATCH_BUCKETS = tuple(float(4**k) for k in range(9))
LATENCY = Histogram(
    "surrogate_request_duration_seconds",
    "Time from the request reaching the view to its response being built.",
    ("model", "protocol"),
    buckets=_LATENCY_BUCKETS,
)
BATCH_ROWS = Histogram(
    "surrogate_batch_rows",
    "Rows per inference request.",
    ("model",),
    buckets=_BATCH_BUCKETS,
)
# Each histogram's upper bounds, +Inf last, as it counts its buckets.
_LATENCY_BOUNDS = [*_LATENCY_BUCKETS, float("inf")]
_BATCH_BOUNDS = [*_BATCH_BUCKETS, float("inf")]
OUT_OF_DOMAIN = Counter(
    "surrogate_out_of_domain_rows",
    "Rows with an input outside the model's training range (counted under every policy but "
    "ignore, which does not check).",
    ("model", "version"),
)
LOAD_FAILURES = Counter(
    "surrogate_model_load_failures", "Model versions that failed to load.", ("model",)
)


# Requests are recorded in the background: a request appends its record to a queue (well under
# a microsecond), and a flush writes them, summed per series, at most FLUSH_SECONDS later, before
# every exposition from this process, and at the worker's exit. In multiprocess mode each
# increment is a locked write to a memory-mapped file: the six of a request cost about 20 us of
# a 125 us single-row V2 request in process (measured with them replaced by nothing). A worker
# killed outright (SIGKILL) loses at most FLUSH_SECONDS of its records.
FLUSH_SECONDS = 0.25


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
        self.model, self.version = model.name, model.version_label

    def __enter__(self) -> RequestTimer:
        self._start = perf_counter()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        _RECORDS.append((self.model, self.version, self.protocol, exc_type is not None,
                         self.rows, perf_counter() - self._start))
        if not _flusher.running:
            _flusher.start()


_RECORDS: deque[tuple[str, str, str, bool, int, float]] = deque()


def flush() -> None:
    """Write the requests recorded so far to the metrics, summed per series."""
    with _FLUSH_LOCK:
        totals: dict[tuple[str, str, str], list] = {}
        while _RECORDS:
            model, version, protocol, failed, rows, seconds = _RECORDS.popleft()
            total = totals.get((model, version, protocol))
            if total is None:
                # requests, failures, rows, batch-size buckets, latency buckets, seconds
                total = totals[model, version, protocol] = [0, 0, 0, {}, {}, 0.0]
            total[0] += 1
            if failed:
                total[1] += 1
            else:
                total[2] += rows
                _count(total[3], _BATCH_BOUNDS, rows)
            _count(total[4], _LATENCY_BOUNDS, seconds)
            total[5] += seconds
        for key, (count, failed, rows, batches, latencies, seconds) in totals.items():
            requests, failures, rows_predicted, batch_rows, latency = _series(*key)
            requests.inc(count)
            if failed:
                failures.inc(failed)
            if batches:  # some succeeded
                rows_predicted.inc(rows)
                _observe_counts(batch_rows, batches, rows)
            _observe_counts(latency, latencies, seconds)


def _count(counts: dict[int, int], bounds: list[float], value: float) -> None:
    """Count ``value`` in its histogram bucket: the first whose bound is at least it."""
    bucket = bisect_left(bounds, value)
    counts[bucket] = counts.get(bucket, 0) + 1


def _observe_counts(child: Histogram, counts: dict[int, int], total: float) -> None:
    """As many ``child.observe`` calls as ``counts`` holds (bucket index -> observations),
    whose values add up to ``total``, in one write per bucket. Reaches into the child's
    bucket values, as its own observe does (prometheus_client 0.20 to 0.26 keep them so)."""
    child._sum.inc(total)
    for bucket, count in counts.items():
        child._buckets[bucket].inc(count)


class _Flusher:
    """The thread that flushes the recorded requests every FLUSH_SECONDS; started by the first
    request of each process (a forked worker starts its own) and run until the process exits,
    which flushes once more."""

    def __init__(self) -> None:
        self.running = False
        self._lock = threading.Lock()
        os.register_at_fork(after_in_child=self._forked)
        atexit.register(flush)

    def start(self) -> None:
        with self._lock:
            if not self.running:
                threading.Thread(target=self._run, name="metrics-flush", daemon=True).start()
                self.running = True

    def _run(self) -> None:
        while True:
            time.sleep(FLUSH_SECONDS)
            try:
                flush()
            except Exception:  # e.g. the metrics directory gone: say so; the queue was emptied
                log.exception("metrics: recorded requests could not be written")

    def _forked(self) -> None:
        global _FLUSH_LOCK
        # The parent's threads are gone from the child, holding whatever lock they held.
        self.running = False
        self._lock, _FLUSH_LOCK = threading.Lock(), threading.Lock()
        _RECORDS.clear()  # the parent's records are the parent's to write


_FLUSH_LOCK = threading.Lock()
_flusher = _Flusher()


@lru_cache(maxsize=4096)
def _series(model: str, version: str, protocol: str) -> tuple[Any, ...]:
    """The labelled children of one (model, version, protocol): looked up once, not per flush."""
    return (
        REQUESTS.labels(model, version, protocol),
        FAILURES.labels(model, version, protocol),
        ROWS.labels(model, version),
        BATCH_ROWS.labels(model),
        LATENCY.labels(model, protocol),
    )


def record_out_of_domain(model: OnnxModel, rows: int) -> None:
    OUT_OF_DOMAIN.labels(model.name, model.version_label).inc(rows)


def record_load_failure(model: str) -> None:
    LOAD_FAILURES.labels(model).inc()


def exposition(accept: str | None) -> tuple[bytes, str]:
    """The current metrics in the format ``accept`` asks for (Prometheus text by default)."""
    flush()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type
