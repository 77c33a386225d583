"""Formula export: a bundle's network as a closed-form expression, a Python or a C function.

The network is read from the bundle's ``model.onnx`` by walking the ONNX graph backwards from its
``outputs`` tensor, so whatever the exporter writes (scaling, every activation, the float64 input
layer) is translated node by node and cannot drift from what the service runs. Further outputs
(``std``, ``jacobian``) are not exported; an ensemble's ``outputs`` is the ``Mean`` of its
members, so its export is the ensemble mean. A graph is translated into a list of steps on one
sample's row vector: :class:`Affine` (``Gemm``, ``MatMul``) and :class:`Elementwise` (every other
op, as a template in a small neutral dialect that ``training.formula_render`` turns into
expression, Python or C syntax). An op outside :data:`SUPPORTED_OPS` is refused by name.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import helper, numpy_helper

from service.bundle_format import MODEL_FILE, OUTPUT_TENSOR, read_card, version_dir
from training.formula_code import render_c, render_python
from training.formula_render import Signature, render_expression, render_layered
from training.formula_steps import Affine, Elementwise, FormulaError, FormulaGraph
from training.formula_tangent import PARTIALS, clip_partials, gelu_partials, mean_partials

__all__ = [
    "MAX_TERMS",
    "RENDERERS",
    "SUPPORTED_OPS",
    "Affine",
    "Elementwise",
    "FormulaError",
    "FormulaGraph",
    "export_formula",
    "read_bundle",
    "read_network",
    "read_outputs",
]

# The largest single expression (numbers and variables, all outputs) written: COMSOL's own
# thermal-actuator network (2-16-16-2, tanh) takes 5190; larger networks read better layered.
MAX_TERMS = 10_000

RENDERERS: dict[str, Callable[..., str]] = {
    "expression": render_expression,
    "layered": render_layered,
    "python": render_python,
    "c": render_c,
}

# Softplus written so that exp never overflows: log(1 + e^z) = max(z, 0) + log(1 + e^-|z|).
_SOFTPLUS = "max({0}, 0.0) + log(1.0 + exp(-abs({0})))"
_NEGATIVE_PART = "(exp(min({0}, 0.0)) - 1.0)"
# ONNX op -> (template over the operands {0}, {1}, ... and attributes {alpha}, ..., the ONNX
# defaults of those attributes). Templates use only + - * /, exp, log, tanh, sin, erf, max, min,
# abs, which every target has; conditionals are written as max/min, which COMSOL, C and Python
# share.
_ELEMENTWISE: dict[str, tuple[str, dict[str, float]]] = {
    "Add": ("{0} + {1}", {}),
    "Sub": ("{0} - {1}", {}),
    "Mul": ("{0}*{1}", {}),
    "Div": ("{0}/{1}", {}),
    "Neg": ("-{0}", {}),
    "Abs": ("abs({0})", {}),
    "Exp": ("exp({0})", {}),
    "Log": ("log({0})", {}),
    "Erf": ("erf({0})", {}),
    "Tanh": ("tanh({0})", {}),
    "Sin": ("sin({0})", {}),
    "Sigmoid": ("1.0/(1.0 + exp(-{0}))", {}),
    "Relu": ("max({0}, 0.0)", {}),
    "LeakyRelu": ("max({0}, 0.0) + {alpha}*min({0}, 0.0)", {"alpha": 0.01}),
    "PRelu": ("max({0}, 0.0) + {1}*min({0}, 0.0)", {}),
    "Elu": ("max({0}, 0.0) + {alpha}*" + _NEGATIVE_PART, {"alpha": 1.0}),
    "Celu": ("max({0}, 0.0) + {alpha}*(exp(min({0}, 0.0)/{alpha}) - 1.0)", {"alpha": 1.0}),
    "Selu": (
        "{gamma}*(max({0}, 0.0) + {alpha}*" + _NEGATIVE_PART + ")",
        {"alpha": 1.67326319217681884765625, "gamma": 1.05070102214813232421875},
    ),
    "Softplus": (_SOFTPLUS, {}),
    "Softsign": ("{0}/(1.0 + abs({0}))", {}),
    "HardSigmoid": ("max(0.0, min(1.0, {alpha}*{0} + {beta}))", {"alpha": 0.2, "beta": 0.5}),
    "HardSwish": ("{0}*max(0.0, min(1.0, {0}/6.0 + 0.5))", {}),
    "Mish": ("{0}*tanh(" + _SOFTPLUS + ")", {}),
    "Sqrt": ("sqrt({0})", {}),  # an ensemble's spread
}
_GELU = {
    "none": "0.5*{0}*(1.0 + erf(0.7071067811865476*{0}))",
    "tanh": "0.5*{0}*(1.0 + tanh(0.7978845608028654*({0} + 0.044715*{0}*{0}*{0})))",
}
_ALIASES = ("Cast", "Identity")  # no-ops here: the exported code computes in double throughout
SUPPORTED_OPS = tuple(sorted({*_ELEMENTWISE, *_ALIASES, "Clip", "Constant", "Gelu", "Gemm",
                              "MatMul", "Mean"}))  # fmt: skip

def read_network(model: onnx.ModelProto, output: str = OUTPUT_TENSOR) -> FormulaGraph:
    """Translate the part of ``model``'s graph that computes ``output`` into a
    :class:`FormulaGraph`.

    Parameters
    ----------
    model : onnx.ModelProto
        A model with one float ``[N, n_inputs]`` graph input that is not an initializer.
    output : str
        The graph output to export.

    Returns
    -------
    FormulaGraph

    Raises
    ------
    FormulaError
        For an op outside :data:`SUPPORTED_OPS`, a shape other than one row vector per sample,
        or a missing output.
    """
    network, _ = read_outputs(model, (output,))
    return network


def read_outputs(model: onnx.ModelProto, outputs: Sequence[str]) -> tuple[FormulaGraph, tuple]:
    """Like :func:`read_network`, for several graph outputs sharing their steps (an ensemble's
    ``outputs`` and ``std``): the graph, its ``output`` the first one's, and each one's variable."""
    graph = model.graph
    present = {value.name for value in graph.output}
    for output in outputs:
        if output not in present:
            raise FormulaError(f"model.onnx has no output {output!r}")
    walk = _Walk({tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer})
    name, walk.n_inputs = _graph_input(graph, walk.constants)
    walk.vectors[name] = "v0"
    for node in _nodes_computing(graph, outputs):
        walk.translate(node)
    for output in outputs:
        if output not in walk.vectors:
            raise FormulaError(f"model.onnx computes {output!r} without using its input")
    variables = tuple(walk.vectors[output] for output in outputs)
    return FormulaGraph(walk.n_inputs, walk.steps, variables[0]), variables


def _graph_input(graph: onnx.GraphProto, constants: dict) -> tuple[str, int]:
    """Name and width of the one ``[N, n_inputs]`` graph input."""
    inputs = [value for value in graph.input if value.name not in constants]
    if len(inputs) != 1:
        raise FormulaError(f"model.onnx has {len(inputs)} inputs; formula export needs one")
    dims = inputs[0].type.tensor_type.shape.dim
    if len(dims) != 2 or dims[1].dim_value < 1:
        raise FormulaError(f"model.onnx input {inputs[0].name!r} is not [N, n_inputs]")
    return inputs[0].name, dims[1].dim_value


def _nodes_computing(graph: onnx.GraphProto, outputs: Sequence[str]) -> list[onnx.NodeProto]:
    """The nodes the ``outputs`` depend on, in the graph's (topological) order."""
    producer = {name: index for index, node in enumerate(graph.node) for name in node.output}
    needed, pending = set(), list(outputs)
    while pending:
        index = producer.get(pending.pop())
        if index is not None and index not in needed:
            needed.add(index)
            pending.extend(name for name in graph.node[index].input if name)
    return [node for index, node in enumerate(graph.node) if index in needed]


class _Walk:
    """State of the translation: constants, tensors already mapped to variables, the steps."""

    def __init__(self, constants: dict[str, np.ndarray]) -> None:
        self.constants = constants
        self.vectors: dict[str, str] = {}
        self.steps: dict[str, Affine | Elementwise] = {}
        self.n_inputs = 0  # set from the graph input

    def translate(self, node: onnx.NodeProto) -> None:
        op = node.op_type
        if op == "Constant":
            self.constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        elif op in _ALIASES and node.input[0] in self.constants:
            self.constants[node.output[0]] = self.constants[node.input[0]]
        elif op in _ALIASES:
            self.vectors[node.output[0]] = self.vectors[node.input[0]]
        elif op in ("Gemm", "MatMul"):
            self._add(node, self._affine(node))
        elif op in _ELEMENTWISE or op in ("Clip", "Gelu", "Mean"):
            self._add(node, self._elementwise(node))
        else:
            raise FormulaError(
                f"model.onnx uses the ONNX op {op!r} (node {node.name!r}), which formula export "
                f"does not translate; supported ops: {', '.join(SUPPORTED_OPS)}"
            )

    def _add(self, node: onnx.NodeProto, step: Affine | Elementwise) -> None:
        if len(node.output) != 1:
            raise FormulaError(f"node {node.name!r} ({node.op_type}) has several outputs")
        var = f"v{len(self.steps) + 1}"
        self.steps[var] = step
        self.vectors[node.output[0]] = var

    def _size(self, var: str) -> int:
        return self.n_inputs if var == "v0" else self.steps[var].size

    def _vector(self, node: onnx.NodeProto, name: str) -> str:
        if name not in self.vectors:
            raise FormulaError(f"node {node.name!r} ({node.op_type}) needs a computed input")
        return self.vectors[name]

    def _affine(self, node: onnx.NodeProto) -> Affine:
        attrs = {attr.name: helper.get_attribute_value(attr) for attr in node.attribute}
        source = self._vector(node, node.input[0])
        weight = self.constants.get(node.input[1])
        if attrs.get("transA", 0) or weight is None or weight.ndim != 2:
            raise FormulaError(f"node {node.name!r} ({node.op_type}) is not x @ W (+ b)")
        weight = weight if attrs.get("transB", 0) else weight.T
        if weight.shape[1] != self._size(source):
            raise FormulaError(f"node {node.name!r}: weight shape does not fit its input")
        if attrs.get("alpha", 1.0) != 1.0:
            weight = weight * np.float64(attrs["alpha"])
        bias = np.zeros(weight.shape[0], dtype=weight.dtype)
        if len(node.input) > 2 and node.input[2]:
            bias = self._broadcast(node, self.constants.get(node.input[2]), weight.shape[0])
            if attrs.get("beta", 1.0) != 1.0:
                bias = bias * np.float64(attrs["beta"])
            bias = np.broadcast_to(bias, weight.shape[0])
        return Affine(source, weight, bias)

    def _elementwise(self, node: onnx.NodeProto) -> Elementwise:
        template, partials = _templates(node)
        operands = [name for name in node.input if name]
        runtime = [self._vector(node, name) for name in operands if name not in self.constants]
        if not runtime:
            raise FormulaError(f"node {node.name!r} ({node.op_type}) has only constant inputs")
        size = self._size(runtime[0])
        if any(self._size(var) != size for var in runtime):
            raise FormulaError(f"node {node.name!r} ({node.op_type}) mixes widths")
        resolved = tuple(
            self._broadcast(node, self.constants[name], size)
            if name in self.constants
            else self.vectors[name]
            for name in operands
        )
        return Elementwise(template, resolved, size, partials)

    @staticmethod
    def _broadcast(node: onnx.NodeProto, value: np.ndarray | None, size: int) -> np.ndarray:
        """A constant as a 1-D array of one value or of one value per element."""
        flat = None if value is None else value.reshape(-1)
        if flat is None or flat.size not in (1, size) or value.ndim > 2 or (
            value.ndim == 2 and value.shape[0] != 1
        ):
            raise FormulaError(f"node {node.name!r} ({node.op_type}): a constant of a shape "
                               "that does not broadcast over one row")  # fmt: skip
        if not np.issubdtype(flat.dtype, np.floating):
            flat = flat.astype(np.float64)
        if not np.isfinite(flat).all():
            raise FormulaError(f"node {node.name!r} ({node.op_type}) has a non-finite constant")
        return flat


def _templates(node: onnx.NodeProto) -> tuple[str, tuple[str, ...]]:
    """The node's value template and its partial derivatives (C, one per operand), with its
    attributes written in."""
    attrs = {attr.name: helper.get_attribute_value(attr) for attr in node.attribute}
    if node.op_type == "Gelu":
        approximate = attrs.get("approximate", b"none")
        approximate = approximate.decode() if isinstance(approximate, bytes) else approximate
        return _GELU[approximate], gelu_partials(approximate)
    if node.op_type == "Mean":  # an ensemble's mean over its members
        terms = " + ".join(f"{{{index}}}" for index in range(len(node.input)))
        return f"({terms})/{len(node.input)}.0", mean_partials(len(node.input))
    if node.op_type == "Clip":
        bounds = tuple(index for index in (1, 2) if len(node.input) > index and node.input[index])
        return {(): "{0}", (1,): "max({0}, {1})", (2,): "min({0}, {1})",
                (1, 2): "min(max({0}, {1}), {2})"}[bounds], clip_partials(bounds)  # fmt: skip
    template, defaults = _ELEMENTWISE[node.op_type]
    values = {name: str(np.float32(attrs.get(name, value))) for name, value in defaults.items()}
    # Attributes go in as literals now; operand placeholders stay for the renderers.
    operands = [f"{{{i}}}" for i in range(len(node.input))]
    return (template.format(*operands, **values),
            tuple(p.format(*operands, **values) for p in PARTIALS[node.op_type]))


def read_bundle(repo: str | os.PathLike, name: str,
                version: int | None) -> tuple[Path, dict[str, Any], onnx.ModelProto]:  # fmt: skip
    """The version directory of a model, its card and its ``model.onnx`` (without external
    data); FormulaError for an unknown model or version or an unreadable bundle."""
    try:
        path = version_dir(repo, name, version)
    except ValueError as exc:
        raise FormulaError(str(exc)) from None
    try:
        card = read_card(path)
        model = onnx.load(path / MODEL_FILE, load_external_data=False)
    except (OSError, ValueError, DecodeError) as exc:  # BundleFormatError is a ValueError
        raise FormulaError(f"cannot read the bundle {path}: {exc}") from None
    return path, card, model


def export_formula(
    repo: str | os.PathLike,
    name: str,
    fmt: str,
    *,
    version: int | None = None,
    max_terms: int = MAX_TERMS,
) -> str:
    """The network of a bundle, scaling included, as source text.

    Parameters
    ----------
    repo : path
        The model repository.
    name : str
        Model name.
    fmt : {"expression", "layered", "python", "c"}
        A closed-form expression per output (as COMSOL shows small networks), the same
        formulas layer by layer (one definition per unit, then the outputs), a Python module
        with one function using only ``math``, or a C99 source file with one function using only
        ``<math.h>``.
    version : int, optional
        Defaults to the latest version.
    max_terms : int
        For ``"expression"``: refuse when the expressions would hold more numbers and variable
        references than this in total.

    Returns
    -------
    str

    Raises
    ------
    FormulaError
        Unknown model or version, an unreadable bundle, an untranslatable graph, or an
        expression larger than ``max_terms``.
    """
    if fmt not in RENDERERS:
        raise FormulaError(f"unknown format {fmt!r}; formats: {', '.join(RENDERERS)}")
    path, card, model = read_bundle(repo, name, version)
    network = read_network(model)
    signature = Signature.from_card(card, path)
    n_outputs = network.size(network.output)
    if (len(signature.inputs), len(signature.outputs)) != (network.n_inputs, n_outputs):
        raise FormulaError(
            f"{path}: model.json describes {len(signature.inputs)} inputs and "
            f"{len(signature.outputs)} outputs, model.onnx has {network.n_inputs} and {n_outputs}"
        )
    if fmt == "expression":
        return RENDERERS[fmt](network, signature, max_terms=max_terms)
    return RENDERERS[fmt](network, signature)
