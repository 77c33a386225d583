"""One loaded model: an ONNX Runtime session plus everything the hot path needs, computed once.

``OnnxModel.load`` reads a bundle, verifies the card against the file (sha256) and the graph
(tensor names, widths, element types), builds the session with the configured threads and
execution providers, and optionally runs it once so the first request does not pay for lazy
initialisation. Any problem raises ``BundleError`` with a reason fit for the repository index.

A bundle may hold further graphs beside model.onnx, named by the card's ``tensors.outputs``
entries with a ``file`` (``jacobian.onnx``: onnxruntime runs a whole graph whatever outputs are
asked for, so the costly Jacobian lives in its own graph, which also computes every output of
model.onnx). Each gets its own session, run only when a request asks for one of its outputs.
"""

from __future__ import annotations

import hashlib
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
from service.devices import CUDA, check_session_providers
from service.errors import BundleError
from service.messages import first_line
from service.repository import BundleRef
from service.settings import Settings

log = logging.getLogger("service.runtime")

PLATFORM = "onnxruntime_onnx"
# The graph output holding the predictions, one column per card output (the bundle contract).
MAIN_OUTPUT = fmt.OUTPUT_TENSOR
# From this many rows, a CUDA session runs with I/O binding (below, the binding costs more than
# the copies it saves).
IO_BINDING_MIN_ROWS = 1024
# An extra graph's file name: a plain ``*.onnx`` name inside the version directory, never a path.
# ORT element types the service can encode in a V2 response, by their V2 datatype.
ORT_DATATYPES = {
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(float16)": "FP16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
}


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
        Every output of every graph, model.onnx's first; ``output_datatypes`` maps each to its
        V2 datatype. ``default_outputs``: model.onnx's alone.
    domain_low, domain_high : ndarray
        float32 bounds of each input's training range (-inf/inf where the card has none).
    providers : tuple of str
        The execution providers the session really runs on.
    metadata : mapping
        The V2 model metadata, minus "versions" (which depends on the registry).
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
        self.output_datatypes = MappingProxyType(
            {name: ORT_DATATYPES.get(o.type, "") for name, o in graph_outputs.items()}
        )
        self.metadata = MappingProxyType(self._v2_metadata(graph_outputs))

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
        session = _session(ref.onnx_path, expected, settings, providers)
        check_session_providers(settings.device, session.get_providers())
        _check_graph(session, card)
        extra = []
        for file_name, names in _extra_graphs(card).items():
            digest = (((card.get("onnx") or {}).get("graphs") or {}).get(file_name) or {})
            graph = _session(ref.path / file_name, digest.get("sha256"), settings, providers)
            _check_extra_graph(graph, file_name, names, session, card)
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

    def _v2_metadata(self, graph_outputs: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": self.name,
            "platform": PLATFORM,
            "inputs": [
                {"name": self.input_name, "datatype": "FP32", "shape": [-1, self.input_width]}
            ],
            "outputs": [
                {"name": n, "datatype": self.output_datatypes[n], "shape": _shape(o.shape)}
                for n, o in graph_outputs.items()
            ],
            "parameters": {
                "inputs": list(self.feature_names),
                "outputs": list(self.target_names),
                "domain": {
                    name: [_finite_or_none(lo), _finite_or_none(hi)]
                    for name, lo, hi in zip(
                        self.feature_names, self.domain_low, self.domain_high, strict=True
                    )
                },
            },
        }

    def __repr__(self) -> str:
        return f"OnnxModel({self.name!r}, version={self.version})"


def read_card(ref: BundleRef) -> dict[str, Any]:
    """The parsed model.json of ``ref``, checked for what the service relies on."""
    try:
        card = fmt.parse_card(_read(ref.card_path))
    except fmt.BundleFormatError as exc:
        raise BundleError(str(exc)) from None
    for key, actual in (("name", ref.name), ("version", ref.version)):
        if key in card and card[key] != actual:
            log.warning("%s/%s: card says %s %r; serving under the directory's",
                        ref.name, ref.version, key, card[key])
    return card


def _session(path, expected_sha256: Any, settings: Settings, providers: Sequence[str]):
    """An ORT session of the graph file at ``path``, after checking its sha256 if given."""
    model_bytes = _read(path)
    if expected_sha256 is not None:
        actual = hashlib.sha256(model_bytes).hexdigest()
        if not isinstance(expected_sha256, str) or actual != expected_sha256.lower():
            raise BundleError(
                f"sha256 of {path.name} is {actual}, the card says {expected_sha256}"
            )
    try:
        return ort.InferenceSession(
            model_bytes, sess_options=session_options(settings), providers=list(providers)
        )
    except Exception as exc:  # ORT raises several unrelated types for a bad file
        raise BundleError(f"onnxruntime cannot load {path.name}: {first_line(exc)}") from exc


def _listed_outputs(card: dict[str, Any]) -> list[dict[str, Any]]:
    listed = (card.get("tensors") or {}).get("outputs", [])
    if not isinstance(listed, list) or not all(
        isinstance(t, dict) and isinstance(t.get("name"), str) for t in listed
    ):
        raise BundleError("model.json 'tensors.outputs' must be a list of {\"name\": ...}")
    return listed


def _extra_graphs(card: dict[str, Any]) -> dict[str, list[str]]:
    """The card's extra graph files and the outputs each is listed for."""
    graphs: dict[str, list[str]] = {}
    for tensor in _listed_outputs(card):
        file_name = tensor.get("file", fmt.MODEL_FILE)
        if file_name == fmt.MODEL_FILE:
            continue
        if not isinstance(file_name, str) or not fmt.GRAPH_FILE_PATTERN.fullmatch(file_name):
            raise BundleError(
                f"output {tensor['name']!r}: file {file_name!r} must be a plain *.onnx file name"
            )
        graphs.setdefault(file_name, []).append(tensor["name"])
    return graphs


def _check_graph(session: ort.InferenceSession, card: dict[str, Any]) -> None:
    _check_input(session, card, fmt.MODEL_FILE)
    n_out = len(card["outputs"])
    outputs = {o.name: o for o in session.get_outputs()}
    main = outputs.get(MAIN_OUTPUT)
    if main is None or _shape(main.shape) != [-1, n_out]:
        found = None if main is None else main.shape
        raise BundleError(f"graph output {MAIN_OUTPUT!r} is {found}, the card's {n_out} outputs "
                          f"need [N, {n_out}]")
    listed = [t["name"] for t in _listed_outputs(card)
              if t.get("file", fmt.MODEL_FILE) == fmt.MODEL_FILE]
    missing = [name for name in listed if name not in outputs]
    if missing:
        raise BundleError(f"card lists outputs {missing} that the graph does not have")
    _check_types(session, fmt.MODEL_FILE)


def _check_extra_graph(
    graph: ort.InferenceSession,
    file_name: str,
    listed: list[str],
    main: ort.InferenceSession,
    card: dict[str, Any],
) -> None:
    _check_input(graph, card, file_name)
    outputs = {o.name for o in graph.get_outputs()}
    missing = [name for name in listed if name not in outputs]
    if missing:
        raise BundleError(f"card lists outputs {missing} in {file_name}, which does not have them")
    clashes = [name for name in listed if name in {o.name for o in main.get_outputs()}]
    if clashes:
        raise BundleError(f"outputs {clashes} are listed in {file_name} but model.onnx has them")
    _check_types(graph, file_name)


def _check_input(session: ort.InferenceSession, card: dict[str, Any], file_name: str) -> None:
    input_name = (card.get("tensors") or {}).get("input", fmt.INPUT_TENSOR)
    n_in = len(card["inputs"])
    inputs = session.get_inputs()
    if [i.name for i in inputs] != [input_name]:
        raise BundleError(
            f"{file_name} inputs are {[i.name for i in inputs]}, expected [{input_name!r}]"
        )
    graph_in = inputs[0]
    if graph_in.type != "tensor(float)" or _shape(graph_in.shape) != [-1, n_in]:
        raise BundleError(
            f"{file_name} input {input_name!r} is {graph_in.type} {graph_in.shape}, the card's "
            f"{n_in} inputs need tensor(float) [N, {n_in}]"
        )


def _check_types(session: ort.InferenceSession, file_name: str) -> None:
    unsupported = [o.name for o in session.get_outputs() if o.type not in ORT_DATATYPES]
    if unsupported:
        raise BundleError(f"{file_name} outputs {unsupported} have unsupported element types")


def _finite_or_none(value: np.float32) -> float | None:
    return float(value) if np.isfinite(value) else None


def _shape(dims: Sequence[Any]) -> list[int]:
    """An ORT shape with symbolic or unknown dimensions as -1 (the V2 convention)."""
    return [d if isinstance(d, int) and d >= 0 else -1 for d in dims]


def _midpoint(spec: dict[str, Any]) -> float:
    low, high = spec.get("min"), spec.get("max")
    if isinstance(low, int | float) and isinstance(high, int | float):
        middle = (low + high) / 2
        if math.isfinite(middle):
            return middle
    return 0.0


def _read(path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise BundleError(f"{path.name} is missing") from None
    except OSError as exc:
        raise BundleError(f"cannot read {path.name}: {exc.strerror}") from None
