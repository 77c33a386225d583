"""One loaded model: an ONNX Runtime session plus everything the hot path needs, computed once.

``OnnxModel.load`` reads a bundle, has ``service.bundle_checks`` verify it (the card against the
files' sha256 and the graphs' tensor names, widths and element types), builds the sessions with
the configured threads and execution providers, and optionally runs it once so the first request
does not pay for lazy initialisation. Any problem raises ``BundleError`` with a reason fit for
the repository index. What the protocols make of a model (V2 datatypes and metadata) is theirs.

A bundle may hold further graphs beside model.onnx, named by the card's ``tensors.outputs``
entries with a ``file`` (``jacobian.onnx``: onnxruntime runs a whole graph whatever outputs are
asked for, so the costly Jacobian lives in its own graph, which also computes every output of
model.onnx). Each gets its own session, run only when a request asks for one of its outputs.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from types import MappingProxyType
from typing import Any

import numpy as np
import onnxruntime as ort
import orjson

from service import bundle_format as fmt
from service.batching import Batcher
from service.bundle_checks import (
    check_extra_graph,
    check_graph,
    extra_graphs,
    graph_shape,
    open_session,
    read_card,
)
from service.devices import CUDA, check_session_providers
from service.errors import BundleError
from service.messages import first_line
from service.repository import BundleRef
from service.settings import Settings

log = logging.getLogger("service.runtime")

# From this many rows, a CUDA session runs with I/O binding (below, the binding costs more than
# the copies it saves).
IO_BINDING_MIN_ROWS = 1024


def session_options(settings: Settings) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.intra_op_threads
    options.inter_op_num_threads = settings.inter_op_threads
    return options


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
        extra_sessions: Sequence[ort.InferenceSession] = (),
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
        # Each output is computed by the first graph that has it: model.onnx, then the others.
        graph_outputs: dict[str, Any] = {}
        self._session_of: dict[str, ort.InferenceSession] = {}
        for s in (session, *extra_sessions):
            for o in s.get_outputs():
                if o.name not in graph_outputs:
                    graph_outputs[o.name], self._session_of[o.name] = o, s
        self._sessions = (session, *extra_sessions)
        self._outputs_of = {s: {o.name for o in s.get_outputs()} for s in self._sessions}
        self.output_names = tuple(graph_outputs)
        # What a request that names no output gets: model.onnx's outputs. The extra graphs
        # (the Jacobian) cost more than the model itself, so they run only when asked for.
        self.default_outputs = tuple(o.name for o in session.get_outputs())
        self._batcher: Batcher | None = None
        self.output_types = MappingProxyType({name: o.type for name, o in graph_outputs.items()})
        self.output_shapes = MappingProxyType(
            {name: graph_shape(o.shape) for name, o in graph_outputs.items()})

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
        options = session_options(settings)
        session = open_session(ref.onnx_path, expected, options, providers)
        check_session_providers(settings.device, session.get_providers())
        check_graph(session, card)
        extra = []
        for file_name, names in extra_graphs(card).items():
            digest = (((card.get("onnx") or {}).get("graphs") or {}).get(file_name) or {})
            graph = open_session(ref.path / file_name, digest.get("sha256"), options, providers)
            check_extra_graph(graph, file_name, names, session, card)
            extra.append(graph)
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
        # One run when a single graph has every asked output (jacobian.onnx also computes the
        # outputs of model.onnx), else one run per graph.
        for session in self._sessions:
            if self._outputs_of[session].issuperset(names):
                return self._run_session(session, x, list(names))
        results: dict[str, np.ndarray] = {}
        for session in self._sessions:
            wanted = [n for n in names if self._session_of[n] is session]
            if wanted:
                results.update(zip(wanted, self._run_session(session, x, wanted), strict=True))
        return [results[n] for n in names]

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

    def warm_up(self) -> None:
        """One run at the middle of the training range, so lazy ORT initialisation happens now."""
        x = np.array([[_midpoint(spec) for spec in self.card["inputs"]]], dtype=np.float32)
        try:
            self.run_now(x, self.output_names)
        except Exception as exc:
            raise BundleError(f"warm-up run failed: {first_line(exc)}") from exc

    def __repr__(self) -> str:
        return f"OnnxModel({self.name!r}, version={self.version})"


def _midpoint(spec: dict[str, Any]) -> float:
    low, high = spec.get("min"), spec.get("max")
    if isinstance(low, int | float) and isinstance(high, int | float):
        middle = (low + high) / 2
        if math.isfinite(middle):
            return middle
    return 0.0
