"""One loaded model: an ONNX Runtime session plus everything the hot path needs, computed once.

``OnnxModel.load`` reads a bundle, has ``service.bundle_checks`` verify it (the card against the
files' sha256 and the graphs' tensor names, widths and element types), builds the sessions with
the configured threads and execution providers, and optionally runs it once so the first request
does not pay for lazy initialisation. Any problem raises ``BundleError`` with a reason fit for
the repository index. What the protocols make of a model (V2 datatypes and metadata) is theirs.

A bundle may hold further graphs beside model.onnx, named by the card's ``tensors.outputs``
entries with a ``file`` (``jacobian.onnx``: onnxruntime runs a whole graph whatever outputs are
asked for, so the costly Jacobian lives in its own graph, which also computes every output of
model.onnx). Each is an :class:`ExtraGraph`: its file's sha256 is checked at load, and its
session is created on the first request that asks for one of its outputs, once per worker
(most requests never do, and a session costs more memory than a small model: measured 0.47 MB
per 4-32-32-2 model with both sessions, 0.21 MB with model.onnx's alone).

Sessions on the CPU share one memory arena per process (ONNX Runtime's environment allocator)
instead of one each: with hundreds of models, per-session arenas add up (0.21 to 0.17 MB per
model measured, the same 4-32-32-2 models).
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Sequence
from operator import le
from types import MappingProxyType
from typing import Any

import numpy as np
import onnxruntime as ort
import orjson

from service import bundle_format as fmt
from service.batching import Batcher
from service.bundle_checks import (
    Declared,
    check_extra_graph,
    check_graph,
    extra_graphs,
    graph_shape,
    open_session,
    read_card,
    read_graph,
)
from service.devices import CPU, CUDA, check_session_providers
from service.errors import BundleError
from service.messages import first_line
from service.repository import BundleRef
from service.settings import Settings

log = logging.getLogger("service.runtime")

# From this many rows, a CUDA session runs with I/O binding (below, the binding costs more than
# the copies it saves).
IO_BINDING_MIN_ROWS = 1024


_SHARED_ARENA_LOCK = threading.Lock()
_shared_arena_pid: int | None = None


# Settings.graph_optimization -> ONNX Runtime's level (see service.settings for the default).
_GRAPH_OPTIMIZATION = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def session_options(settings: Settings, providers: Sequence[str]) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.intra_op_threads
    options.inter_op_num_threads = settings.inter_op_threads
    options.graph_optimization_level = _GRAPH_OPTIMIZATION[settings.graph_optimization]
    if list(providers) == [CPU]:
        _register_shared_arena()
        options.add_session_config_entry("session.use_env_allocators", "1")
    return options


def _register_shared_arena() -> None:
    """Register the process's shared CPU arena with ONNX Runtime's environment, once."""
    global _shared_arena_pid
    with _SHARED_ARENA_LOCK:
        if _shared_arena_pid == os.getpid():
            return
        info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0,
                                 ort.OrtMemType.DEFAULT)
        ort.create_and_register_allocator(info, None)  # a second call (a forked child) is a no-op
        _shared_arena_pid = os.getpid()


class ExtraGraph:
    """A further graph of a bundle (``jacobian.onnx``): checked at load against the card, its
    ORT session created on first use, once, whichever thread asks first.

    ``outputs`` maps the outputs the card lists in this file to their ONNX element type and
    shape. A card that does not declare them (written before cards had datatypes) has the graph
    opened at load to read them, and the session let go again.
    """

    def __init__(self, ref: BundleRef, card: dict[str, Any], file_name: str,
                 listed: dict[str, Declared], main_outputs: Sequence[str],
                 options: ort.SessionOptions, providers: Sequence[str]) -> None:
        self.file_name, self.path = file_name, ref.path / file_name
        digests = (card.get("onnx") or {}).get("graphs") or {}
        self._sha256 = (digests.get(file_name) or {}).get("sha256")
        self._open_args = (options, list(providers))
        self._check = (file_name, listed, tuple(main_outputs), card)
        self._lock = threading.Lock()
        self._session: ort.InferenceSession | None = None
        self._graph_outputs: frozenset[str] = frozenset()
        if all(declared.complete for declared in listed.values()):
            read_graph(self.path, self._sha256)  # the file is the one the card describes
            self.outputs = {name: (d.type, d.shape) for name, d in listed.items()}
        else:
            session = self._open()
            found = {o.name: o for o in session.get_outputs()}
            self.outputs = {name: (found[name].type, graph_shape(found[name].shape))
                            for name in listed}

    @property
    def loaded(self) -> bool:
        """Whether this worker has created the session yet."""
        return self._session is not None

    def session(self) -> ort.InferenceSession:
        """The session, created now if this is the first use. Raises BundleError when the
        file no longer matches the card or ONNX Runtime cannot load it."""
        session = self._session
        if session is None:
            with self._lock:
                if self._session is None:
                    opened = self._open()
                    self._graph_outputs = frozenset(o.name for o in opened.get_outputs())
                    self._session = opened
                session = self._session
        return session

    def has_all(self, names: Sequence[str]) -> bool:
        """Whether one run of this (created) graph answers every output in ``names``."""
        return self._graph_outputs.issuperset(names)

    def _open(self) -> ort.InferenceSession:
        session = open_session(self.path, self._sha256, *self._open_args)
        check_extra_graph(session, *self._check)
        return session


class OnnxModel:
    """A loaded, verified model version; immutable, shared by all threads of a worker.

    Attributes
    ----------
    name, version : str, int
        Identity, from the directory layout (which wins over the card, as in Triton).
    card : mapping
        The model card (model.json) as read.
    input_name : str
        The graph input, float32 [N, input_width].
    feature_names, target_names : tuple of str
        Card input and output names; ``target_names`` label the columns of ``outputs``.
    output_names : tuple of str
        Every output of every graph, model.onnx's first; ``output_types`` maps each to its ONNX
        element type (``tensor(float)``...) and ``output_shapes`` to its shape (-1 where
        symbolic). ``default_outputs``: model.onnx's alone.
    domain_low, domain_high : ndarray
        float32 bounds of each input's training range (-inf/inf where the card has none).
    providers : tuple of str
        The execution providers the session really runs on.
    """

    def __init__(
        self,
        ref: BundleRef,
        card: dict[str, Any],
        session: ort.InferenceSession,
        extra_graphs: Sequence[ExtraGraph] = (),
        chunk_rows: int = 65536,
    ):
        self.name, self.version, self.card, self.path = ref.name, ref.version, card, ref.path
        self.card_json = orjson.dumps(card)
        self._session = session
        self.chunk_rows = chunk_rows
        # I/O binding pays off where inputs and outputs cross to a device: with CUDA only.
        self.io_binding_device = "cuda" if CUDA in session.get_providers() else None
        # What ORT actually uses: it falls back to CPU silently when CUDA fails to initialise.
        self.providers = tuple(session.get_providers())
        self.feature_names = fmt.names(card, "inputs")
        self.target_names = fmt.names(card, "outputs")
        self.feature_index = MappingProxyType({n: i for i, n in enumerate(self.feature_names)})
        tensors = card.get("tensors") or {}
        self.input_name = tensors.get("input", fmt.INPUT_TENSOR)
        self.input_width = len(self.feature_names)
        low, high = fmt.training_range(card)
        self.domain_low = np.array(low, dtype=np.float32)
        self.domain_high = np.array(high, dtype=np.float32)
        # The same bounds, at most float32's largest finite value, for plainly_inside: as
        # arrays, and as Python floats for small requests.
        finite = float(np.finfo(np.float32).max)
        self._inside_low = np.maximum(self.domain_low, -finite)
        self._inside_high = np.minimum(self.domain_high, finite)
        self._inside_lists = (self._inside_low.tolist(), self._inside_high.tolist())
        self._inside_tiles: tuple[np.ndarray, np.ndarray] | None = None  # see _tiles
        # Whether rows plainly inside the range can only hold plain numbers: no input's range
        # holds 0 or 1 (what JSON false and true read as) or reaches 2**63 (integers beyond
        # 64 bits). The codecs then skip looking for those in long JSON requests.
        self.inside_proves_plain = bool(
            ((self._inside_low > 1) | (self._inside_high < 0)
             | ((self._inside_low > 0) & (self._inside_high < 1))).all()
            and (np.abs(np.concatenate([self._inside_low, self._inside_high])) < 2.0**63).all()
        )
        # Each output is computed by model.onnx, or by the extra graph the card lists it in.
        described = {o.name: (o.type, graph_shape(o.shape)) for o in session.get_outputs()}
        self._graph_of: dict[str, ExtraGraph | None] = dict.fromkeys(described)
        for graph in extra_graphs:
            for name, description in graph.outputs.items():
                described.setdefault(name, description)
                self._graph_of.setdefault(name, graph)
        self._extra_graphs = tuple(extra_graphs)
        self.output_names = tuple(described)
        # What a request that names no output gets: model.onnx's outputs. The extra graphs
        # (the Jacobian) cost more than the model itself, so they run only when asked for.
        self.default_outputs = tuple(o.name for o in session.get_outputs())
        self._batcher: Batcher | None = None
        self.output_types = MappingProxyType({name: d[0] for name, d in described.items()})
        # The V2 datatype name of each output (FP32...), and the version as protocols write it.
        self.output_datatypes = MappingProxyType(
            {name: fmt.OUTPUT_ELEMENT_TYPES[d[0]] for name, d in described.items()})
        self.version_label = str(self.version)
        self.output_shapes = MappingProxyType({name: d[1] for name, d in described.items()})

    @classmethod
    def load(cls, ref: BundleRef, settings: Settings, providers: Sequence[str]) -> OnnxModel:
        """Read, verify and (optionally) warm up one bundle.

        Raises
        ------
        BundleError
            The bundle is missing a file, its card is invalid or disagrees with the graphs, a
            sha256 does not match, or ONNX Runtime cannot load or run it.
        """
        card = read_card(ref)
        expected = (card.get("onnx") or {}).get("sha256")
        options = session_options(settings, providers)
        session = open_session(ref.onnx_path, expected, options, providers)
        check_session_providers(settings.device, session.get_providers())
        check_graph(session, card)
        main_outputs = [o.name for o in session.get_outputs()]
        extra = [ExtraGraph(ref, card, file_name, listed, main_outputs, options, providers)
                 for file_name, listed in extra_graphs(card).items()]
        model = cls(ref, card, session, extra, settings.chunk_rows)
        if settings.warmup:
            model.warm_up()
        if settings.batch_delay_ms > 0:
            model._batcher = Batcher(model.run_now, settings.batch_delay_ms / 1000,
                                     settings.batch_max_rows)
        return model

    def run(self, x: np.ndarray, output_names: Sequence[str] | None = None) -> list[np.ndarray]:
        """Run validated float32 ``x`` of shape (n, input_width); one array per output (by
        default ``default_outputs``), batched with concurrent requests for the same outputs
        when dynamic batching is on (``batch_delay_ms``, see ``service.batching``)."""
        names = tuple(output_names or self.default_outputs)
        if self._batcher is not None:
            return self._batcher.submit(x, names)
        return self.run_now(x, names)

    def retire(self) -> None:
        """This version leaves service (unloaded, or replaced on disk): batches waiting for
        more requests run now instead of after the batch delay, and requests still in flight
        on it run at once. It keeps answering them."""
        if self._batcher is not None:
            self._batcher.close()

    def run_now(self, x: np.ndarray, names: tuple[str, ...]) -> list[np.ndarray]:
        """Run ``x`` for ``names`` now, in this thread.

        Only the graphs holding the asked outputs run; more than ``chunk_rows`` rows run in
        chunks, so one huge request cannot grow ORT's memory arena without bound.
        """
        if len(x) <= self.chunk_rows:
            return self._run_once(x, names)
        parts = [self._run_once(x[i:i + self.chunk_rows], names)
                 for i in range(0, len(x), self.chunk_rows)]
        return [np.concatenate(chunks) for chunks in zip(*parts, strict=True)]

    def _run_once(self, x: np.ndarray, names: tuple[str, ...]) -> list[np.ndarray]:
        if names == self.default_outputs:  # the usual request: model.onnx's outputs
            return self._run_session(self._session, x, list(names))
        graphs = [g for g in self._extra_graphs if any(self._graph_of[n] is g for n in names)]
        if not graphs:
            return self._run_session(self._session, x, list(names))
        # One run when a single graph has every asked output (jacobian.onnx also computes the
        # outputs of model.onnx), else one run per graph.
        sessions = [graph.session() for graph in graphs]
        for graph, session in zip(graphs, sessions, strict=True):
            if graph.has_all(names):
                return self._run_session(session, x, list(names))
        results: dict[str, np.ndarray] = {}
        for graph, session in [(None, self._session), *zip(graphs, sessions, strict=True)]:
            wanted = [n for n in names if self._graph_of[n] is graph]
            if wanted:
                results.update(zip(wanted, self._run_session(session, x, wanted), strict=True))
        return [results[n] for n in names]

    @property
    def sessions_open(self) -> int:
        """ORT sessions this worker holds for the model: model.onnx's and each extra graph's
        that a request has needed so far."""
        return 1 + sum(graph.loaded for graph in self._extra_graphs)

    def _run_session(self, session, x: np.ndarray, names: list[str]) -> list[np.ndarray]:
        if self.io_binding_device is None or len(x) < IO_BINDING_MIN_ROWS:
            return session.run(names, {self.input_name: x})
        # Large batches on a GPU: copy the input to the device once, keep the outputs there
        # until the run ends, then copy each back once (no staging copies inside ORT's run).
        device = self.io_binding_device
        binding = session.io_binding()
        binding.bind_ortvalue_input(
            self.input_name, ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(x), device, 0)
        )
        for name in names:
            binding.bind_output(name, device, 0)
        session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()

    def out_of_domain(self, x: np.ndarray) -> np.ndarray:
        """Boolean (rows, inputs): where ``x`` lies outside the training range."""
        return (x < self.domain_low) | (x > self.domain_high)

    def plainly_inside(self, x: np.ndarray) -> bool:
        """Whether every value of ``x`` is finite and inside the training range: one pass for
        the usual request, which then needs neither the finiteness nor the domain check in
        full. False means some value is NaN, infinite or outside (the checks tell which).
        A request of a few rows is compared in Python: numpy calls on a tiny array cost more
        than the comparisons."""
        if len(x) <= _PYTHON_CHECK_ROWS:
            low, high = self._inside_lists  # compared value by value in C (map), NaN failing
            return all(all(map(le, low, row)) and all(map(le, row, high)) for row in x.tolist())
        # The values, flat, against the bounds repeated row after row: contiguous comparisons,
        # where comparing the (rows, inputs) array with the bounds would loop over one row's
        # few values at a time (1000 rows of 8: 5.7 us against 12.7).
        values = x.reshape(-1)
        low, high = self._tiles()
        whole = len(values) - len(values) % len(low)
        if whole and not _between(values[:whole].reshape(-1, len(low)), low, high):
            return False
        rest = values[whole:]
        return _between(rest, low[:len(rest)], high[:len(rest)])

    def _tiles(self) -> tuple[np.ndarray, np.ndarray]:
        """The inside bounds repeated over as many whole rows as fit :data:`_TILE_VALUES`
        values (one row at least); any shorter run of whole rows is a prefix of them. Made on
        the first request that needs them, so an idle model does not hold them."""
        if self._inside_tiles is None:
            rows = max(1, _TILE_VALUES // self.input_width)
            self._inside_tiles = (np.tile(self._inside_low, rows),
                                  np.tile(self._inside_high, rows))
        return self._inside_tiles

    def warm_up(self) -> None:
        """One run of model.onnx at the middle of the training range, so ORT's lazy
        initialisation happens now (the extra graphs initialise on their first use)."""
        x = np.array([[_midpoint(spec) for spec in self.card["inputs"]]], dtype=np.float32)
        try:
            self.run_now(x, self.default_outputs)
        except Exception as exc:
            raise BundleError(f"warm-up run failed: {first_line(exc)}") from exc

    def __repr__(self) -> str:
        return f"OnnxModel({self.name!r}, version={self.version})"


# Requests up to this many rows are checked in Python (plainly_inside).
_PYTHON_CHECK_ROWS = 4
# The most values of the bounds plainly_inside repeats (64 KB for both): 1024 rows of 8 inputs.
_TILE_VALUES = 8192


def _between(values: np.ndarray, low: np.ndarray, high: np.ndarray) -> bool:
    """Whether every value lies in [low, high] (NaN does not)."""
    return bool(((values >= low) & (values <= high)).all())


def _midpoint(spec: dict[str, Any]) -> float:
    low, high = spec.get("min"), spec.get("max")
    if isinstance(low, int | float) and isinstance(high, int | float):
        middle = (low + high) / 2
        if math.isfinite(middle):
            return middle
    return 0.0
