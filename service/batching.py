"""Dynamic batching: concurrent requests to one model run as one ONNX Runtime call.

Like Triton's dynamic batcher and MLServer's adaptive batching, within one worker process:
requests asking for the same outputs wait up to ``max_delay_s`` for others, their rows are
concatenated into one ``run(x_all, output_names)`` call, and each caller gets back exactly its
own rows of every output whose first dimension is the batch (predictions [N, n_out], std,
the jacobian [N, n_out, n_in]).

No batching thread: the first request of a batch (its *leader*) waits for the delay, or until the
batch holds ``max_rows`` rows, then runs the batch in its own thread and hands every other caller
its slice. So there is nothing to start after the fork, nothing to stop, and a batch never waits
for a thread that is busy with another one.

Correctness comes before speed (the bugs of MLServer's issues #1306 and #514 are the ones to
avoid): callers validate their input before ``submit``; if the combined run still raises, each
request of the batch runs again alone, so only the request at fault gets the error; a request of
``max_rows`` rows or more runs alone at once.

When it pays: each ONNX Runtime call has a fixed cost (a few microseconds on a CPU, a kernel
launch and two copies on a GPU) that a batch pays once. On a CPU serving small MLPs the fixed cost
is small next to HTTP and JSON work, so the added delay usually costs more latency than the saved
runs buy throughput; turn it on for GPUs and for large models, measured with ``python -m bench``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

Run = Callable[[np.ndarray, Sequence[str]], list[np.ndarray]]


class BatcherClosed(RuntimeError):
    """A batch was abandoned because its leader failed before running it."""


@dataclass(eq=False, slots=True)
class _Request:
    x: np.ndarray
    done: threading.Event = field(default_factory=threading.Event)
    result: list[np.ndarray] | None = None
    error: BaseException | None = None


@dataclass(eq=False, slots=True)
class _Batch:
    requests: list[_Request] = field(default_factory=list)
    rows: int = 0
    # Set when the batch must run now: it is full, or the batcher closes.
    flush: threading.Event = field(default_factory=threading.Event)


class Batcher:
    """Gather concurrent ``submit`` calls into batched ``run`` calls; see the module docstring.

    Parameters
    ----------
    run : callable
        ``run(x, output_names) -> list of arrays``, e.g. ``OnnxModel.run``; thread-safe.
    max_delay_s : float
        How long the first request of a batch waits for more; 0 disables batching.
    max_rows : int
        A batch runs as soon as it holds this many rows; a larger request runs alone.
    """

    def __init__(self, run: Run, max_delay_s: float, max_rows: int):
        if max_delay_s < 0:
            raise ValueError(f"max_delay_s must be >= 0, got {max_delay_s}")
        if max_rows <= 0:
            raise ValueError(f"max_rows must be > 0, got {max_rows}")
        self.run, self.max_delay_s, self.max_rows = run, max_delay_s, max_rows
        self._lock = threading.Lock()
        self._open: dict[tuple[str, ...], _Batch] = {}
        self._closed = False

    def submit(self, x: np.ndarray, output_names: Sequence[str]) -> list[np.ndarray]:
        """Run ``x`` (validated rows), batched with concurrent requests for the same outputs.

        Returns one array per output, holding this request's rows only. Raises what ``run``
        raises for this request alone.
        """
        names = tuple(output_names)
        if self.max_delay_s == 0 or len(x) >= self.max_rows:
            return self.run(x, names)
        request = _Request(x)
        with self._lock:
            batch, leader = (None, False) if self._closed else self._join(names, request)
        if batch is None:
            return self.run(x, names)
        if leader:
            batch.flush.wait(self.max_delay_s)
            with self._lock:
                if self._open.get(names) is batch:
                    del self._open[names]
            self._execute(batch, names)
        else:
            request.done.wait()
        if request.error is not None:
            raise request.error
        return request.result

    @property
    def waiting(self) -> int:
        """How many requests wait in batches that have not started running."""
        with self._lock:
            return sum(len(batch.requests) for batch in self._open.values())

    def close(self) -> None:
        """Run every waiting batch now; later requests run unbatched."""
        with self._lock:
            self._closed = True
            batches = list(self._open.values())
            self._open.clear()
        for batch in batches:
            batch.flush.set()

    def _join(self, names: tuple[str, ...], request: _Request) -> tuple[_Batch, bool]:
        """Add ``request`` to the open batch for ``names`` (under the lock); True if it leads."""
        batch = self._open.get(names)
        leader = batch is None or batch.rows + len(request.x) > self.max_rows
        if leader:
            if batch is not None:  # would overflow: send the open one on its way
                batch.flush.set()
            batch = self._open[names] = _Batch()
        batch.requests.append(request)
        batch.rows += len(request.x)
        if batch.rows >= self.max_rows:
            del self._open[names]
            batch.flush.set()
        return batch, leader

    def _execute(self, batch: _Batch, names: tuple[str, ...]) -> None:
        """Run a sealed batch and wake its callers, whatever happens."""
        try:
            if len(batch.requests) == 1 or not self._run_together(batch.requests, names):
                for request in batch.requests:
                    _run_alone(self.run, request, names)
        finally:
            for request in batch.requests:
                if request.result is None and request.error is None:
                    request.error = BatcherClosed("the batch was abandoned before it ran")
                request.done.set()

    def _run_together(self, requests: list[_Request], names: tuple[str, ...]) -> bool:
        """One run for every request; False (nothing assigned) if it raises or mis-shapes."""
        sizes = [len(r.x) for r in requests]
        try:
            outputs = self.run(np.concatenate([r.x for r in requests]), names)
        except Exception:
            return False
        total = sum(sizes)
        if any(np.ndim(out) == 0 or len(out) != total for out in outputs):
            return False
        stops = np.cumsum(sizes).tolist()
        for request, start, stop in zip(requests, [0, *stops], stops, strict=False):
            request.result = [out[start:stop] for out in outputs]
        return True


def _run_alone(run: Run, request: _Request, names: tuple[str, ...]) -> None:
    try:
        request.result = run(request.x, names)
    except Exception as exc:
        request.error = exc
