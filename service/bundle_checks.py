"""What a bundle must hold to be served, checked before a version goes READY: its card, each
graph's sha256 against the card, and each graph's input and outputs against the card (names,
widths, element types). Every refusal is a ``BundleError`` with a reason fit for the repository
index. ONNX Runtime reads the graphs; nothing here needs the onnx package.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import onnxruntime as ort

from service import bundle_format as fmt
from service.errors import BundleError
from service.messages import first_line
from service.repository import BundleRef

log = logging.getLogger("service.runtime")

__all__ = ["Declared", "check_extra_graph", "check_graph", "extra_graphs", "graph_shape",
           "open_session", "read_card", "read_graph"]


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


def read_graph(path, expected_sha256: Any) -> bytes:
    """The bytes of the graph file at ``path``, after checking its sha256 if given."""
    model_bytes = _read(path)
    if expected_sha256 is not None:
        actual = hashlib.sha256(model_bytes).hexdigest()
        if not isinstance(expected_sha256, str) or actual != expected_sha256.lower():
            raise BundleError(
                f"sha256 of {path.name} is {actual}, the card says {expected_sha256}"
            )
    return model_bytes


def open_session(path, expected_sha256: Any, options: ort.SessionOptions,
                 providers: Sequence[str]) -> ort.InferenceSession:
    """An ORT session of the graph file at ``path``, after checking its sha256 if given."""
    model_bytes = read_graph(path, expected_sha256)
    try:
        return ort.InferenceSession(
            model_bytes, sess_options=options, providers=list(providers)
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


def extra_graphs(card: dict[str, Any]) -> dict[str, dict[str, Declared]]:
    """The card's extra graph files, each with the outputs it is listed for and what the card
    declares of them."""
    graphs: dict[str, dict[str, Declared]] = {}
    for tensor in _listed_outputs(card):
        file_name = tensor.get("file", fmt.MODEL_FILE)
        if file_name == fmt.MODEL_FILE:
            continue
        if not isinstance(file_name, str) or not fmt.GRAPH_FILE_PATTERN.fullmatch(file_name):
            raise BundleError(
                f"output {tensor['name']!r}: file {file_name!r} must be a plain *.onnx file name"
            )
        graphs.setdefault(file_name, {})[tensor["name"]] = _declared(tensor)
    return graphs


@dataclass(frozen=True)
class Declared:
    """What the card says of one output: its ONNX element type (from the V2 ``datatype``) and
    shape, None where the card does not say (cards written before datatypes were)."""

    type: str | None
    shape: list[int] | None

    @property
    def complete(self) -> bool:
        return self.type is not None and self.shape is not None


def _declared(tensor: dict[str, Any]) -> Declared:
    datatype, shape = tensor.get("datatype"), tensor.get("shape")
    types = {v2: onnx_type for onnx_type, v2 in fmt.OUTPUT_ELEMENT_TYPES.items()}
    if datatype is not None and datatype not in types:
        raise BundleError(f"output {tensor['name']!r}: datatype {datatype!r} is not one of "
                          f"{', '.join(types)}")
    if shape is not None and not (isinstance(shape, list) and all(
            isinstance(d, int) and not isinstance(d, bool) for d in shape)):
        raise BundleError(f"output {tensor['name']!r}: shape {shape!r} must be a list of integers")
    return Declared(None if datatype is None else types[datatype], shape)


def check_graph(session: ort.InferenceSession, card: dict[str, Any]) -> None:
    _check_input(session, card, fmt.MODEL_FILE)
    n_out = len(card["outputs"])
    outputs = {o.name: o for o in session.get_outputs()}
    main = outputs.get(fmt.OUTPUT_TENSOR)
    if main is None or graph_shape(main.shape) != [-1, n_out]:
        found = None if main is None else main.shape
        raise BundleError(f"graph output {fmt.OUTPUT_TENSOR!r} is {found}, the card's {n_out} "
                          f"outputs need [N, {n_out}]")
    listed = [t["name"] for t in _listed_outputs(card)
              if t.get("file", fmt.MODEL_FILE) == fmt.MODEL_FILE]
    missing = [name for name in listed if name not in outputs]
    if missing:
        raise BundleError(f"card lists outputs {missing} that the graph does not have")
    _check_types(session, fmt.MODEL_FILE)


def check_extra_graph(
    graph: ort.InferenceSession,
    file_name: str,
    listed: dict[str, Declared],
    main_outputs: Sequence[str],
    card: dict[str, Any],
) -> None:
    """``graph`` (``file_name``) has the card's input and every output the card lists in it,
    of the declared element type and shape; none of them is also model.onnx's."""
    _check_input(graph, card, file_name)
    outputs = {o.name: o for o in graph.get_outputs()}
    missing = [name for name in listed if name not in outputs]
    if missing:
        raise BundleError(f"card lists outputs {missing} in {file_name}, which does not have them")
    clashes = [name for name in listed if name in main_outputs]
    if clashes:
        raise BundleError(f"outputs {clashes} are listed in {file_name} but model.onnx has them")
    _check_types(graph, file_name)
    for name, declared in listed.items():
        found = outputs[name]
        if declared.type is not None and found.type != declared.type:
            raise BundleError(f"{file_name} output {name!r} is {found.type}, the card says "
                              f"{fmt.OUTPUT_ELEMENT_TYPES[declared.type]}")
        if declared.shape is not None and graph_shape(found.shape) != declared.shape:
            raise BundleError(f"{file_name} output {name!r} has shape {graph_shape(found.shape)}, "
                              f"the card says {declared.shape}")


def _check_input(session: ort.InferenceSession, card: dict[str, Any], file_name: str) -> None:
    input_name = (card.get("tensors") or {}).get("input", fmt.INPUT_TENSOR)
    n_in = len(card["inputs"])
    inputs = session.get_inputs()
    if [i.name for i in inputs] != [input_name]:
        raise BundleError(
            f"{file_name} inputs are {[i.name for i in inputs]}, expected [{input_name!r}]"
        )
    graph_in = inputs[0]
    if graph_in.type != "tensor(float)" or graph_shape(graph_in.shape) != [-1, n_in]:
        raise BundleError(
            f"{file_name} input {input_name!r} is {graph_in.type} {graph_in.shape}, the card's "
            f"{n_in} inputs need tensor(float) [N, {n_in}]"
        )


def _check_types(session: ort.InferenceSession, file_name: str) -> None:
    unsupported = [o.name for o in session.get_outputs() if o.type not in fmt.OUTPUT_ELEMENT_TYPES]
    if unsupported:
        raise BundleError(f"{file_name} outputs {unsupported} have unsupported element types")


def graph_shape(dims: Sequence[Any]) -> list[int]:
    """An ORT shape with symbolic or unknown dimensions as -1 (the V2 convention)."""
    return [d if isinstance(d, int) and d >= 0 else -1 for d in dims]


def _read(path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise BundleError(f"{path.name} is missing") from None
    except OSError as exc:
        raise BundleError(f"cannot read {path.name}: {exc.strerror}") from None
