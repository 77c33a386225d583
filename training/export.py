"""Export a fitted ``SurrogateMLP`` or ``SurrogateEnsemble`` to ONNX: physical units in and out,
scaling inside the graph.

One routine, :func:`emit_forward`, writes the input scaling, every layer (``Gemm`` then the
activation's own ``emit``) and the inverse output scaling of one network into a
:class:`~training.graph.GraphBuilder`. The hidden layers run in float32; the input scaling with
the first affine map, and the output scaling, run in float64, which is where float32 would lose
digits (see the comments there). :func:`emit_model` adds the outputs of the bundle contract: the
network's ``outputs``, for an ensemble their mean and ``std`` over members, and with
``jacobian=True`` the analytic ``jacobian`` (:mod:`training.jacobian`). :func:`to_onnx` wraps
that into a checked model; the skl2onnx converter registered on import runs :func:`emit_network`
on a builder whose names are reserved in skl2onnx's scope and copies the nodes into its
container, so a ``Pipeline`` holding the estimator converts with ``skl2onnx.to_onnx`` as well.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper
from skl2onnx import update_registered_converter
from skl2onnx.common.data_types import FloatTensorType
from skl2onnx.common.utils import check_input_and_output_numbers, check_input_and_output_types
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from service.bundle_format import INPUT_TENSOR, JACOBIAN_TENSOR, OUTPUT_TENSOR, STD_TENSOR
from training.activations import get_activation
from training.ensemble import SurrogateEnsemble, members
from training.estimator import SurrogateMLP
from training.graph import OPSET, GraphBuilder, float_tensor
from training.jacobian import emit_jacobian

__all__ = [
    "OUTPUT_DATATYPE",
    "Forward",
    "describe",
    "emit_forward",
    "emit_model",
    "emit_network",
    "output_shapes",
    "to_onnx",
]

_FITTED = ("coefs_", "intercepts_", "activations_", "activation_params_", "x_scaler_", "y_scaler_")


def _check_fitted(model) -> None:
    try:
        if isinstance(model, SurrogateEnsemble):
            check_is_fitted(model, "estimators_")
        else:
            check_is_fitted(model, _FITTED)
    except NotFittedError:
        raise NotFittedError(
            f"this {type(model).__name__} is not fitted yet: call fit(X, y) before exporting it"
        ) from None


def _emit_input_layer(g: GraphBuilder, scaler, x: str, coef, intercept) -> str:
    """Input scaling and the first layer's affine map, run in float64; the float32 result."""
    # (x - offset) cancels most digits of x when the spread is small next to the offset, and
    # with unscaled inputs x @ W cancels large terms; in float32 the rounding of the offset, of
    # Log and of those terms would stay in the result. The first layer is narrow, so it is cheap.
    x = g.op("Cast", x, to=TensorProto.DOUBLE)
    if scaler.method == "log":
        x = g.op("Log", x, name_hint="log_inputs")
    x = _emit_unless_identity(g, "Sub", x, scaler.offset_, "x_offset", 0.0)
    x = _emit_unless_identity(g, "Div", x, scaler.scale_, "x_scale", 1.0)
    W, b = g.const(coef, "W", dtype=np.float64), g.const(intercept, "b", dtype=np.float64)
    return g.op("Cast", g.op("Gemm", x, W, b), to=TensorProto.FLOAT)


def _emit_y_unscaling(g: GraphBuilder, scaler, z: str) -> str:
    """Scaled float32 outputs to physical float64 ones."""
    # float64: Exp turns the absolute rounding of ``z * scale + offset`` into relative error of
    # the output, so a float32 sum near, say, log(1e3) would cost ~1e-6 of every value; and an
    # ensemble's spread is a difference of members that agree to several digits.
    z = g.op("Cast", z, to=TensorProto.DOUBLE)
    z = _emit_unless_identity(g, "Mul", z, scaler.scale_, "y_scale", 1.0)
    z = _emit_unless_identity(g, "Add", z, scaler.offset_, "y_offset", 0.0)
    if scaler.method == "log":
        z = g.op("Exp", z, name_hint="exp_outputs")
    return z


def _emit_unless_identity(g: GraphBuilder, op: str, x: str, values, name: str,
                          identity: float) -> str:
    """``op(x, values)`` with ``values`` a float64 constant, or ``x`` itself when every value is
    ``identity`` (a scaler that leaves a side unscaled adds no node)."""
    values = np.asarray(values, dtype=np.float64)
    if np.all(values == identity):
        return x
    return g.op(op, x, g.const(values, name, dtype=np.float64))


@dataclass(frozen=True)
class Forward:
    """Tensor names of one network's forward pass in a graph.

    Attributes
    ----------
    pre : list of str
        float32 pre-activation ``[N, units]`` of every layer, the output layer's last.
    outputs64 : str
        The physical outputs ``[N, n_outputs]``, float64.
    """

    pre: list[str]
    outputs64: str


def emit_forward(g: GraphBuilder, model, x: str) -> Forward:
    """Add one fitted network to ``g``, from physical inputs to physical outputs.

    Parameters
    ----------
    g : GraphBuilder
        Receives the nodes and initializers.
    model : SurrogateMLP
        A fitted estimator.
    x : str
        Name of the float32 ``[N, n_features_in_]`` input tensor.

    Returns
    -------
    Forward
    """
    _check_fitted(model)
    layers = zip(
        model.coefs_, model.intercepts_, model.activations_, model.activation_params_, strict=True
    )
    a, pre = x, []
    for index, (coef, intercept, activation, params) in enumerate(layers):
        if index == 0:
            z = _emit_input_layer(g, model.x_scaler_, a, coef, intercept)
        else:
            z = g.op("Gemm", a, g.const(coef, "W"), g.const(intercept, "b"))
        pre.append(z)
        a = get_activation(activation).emit(g, z, params)
    return Forward(pre, _emit_y_unscaling(g, model.y_scaler_, a))


def emit_network(g: GraphBuilder, model, x: str) -> str:
    """:func:`emit_forward`, returning the name of the float32 ``[N, n_outputs_]`` output."""
    return g.op("Cast", emit_forward(g, model, x).outputs64, to=TensorProto.FLOAT)


def emit_model(g: GraphBuilder, model, x: str, *, jacobian: bool = False) -> dict[str, str]:
    """Add the outputs of the bundle contract for a fitted model to ``g``.

    Parameters
    ----------
    g : GraphBuilder
    model : SurrogateMLP or SurrogateEnsemble
        A fitted model.
    x : str
        Name of the float32 ``[N, n_features_in_]`` input tensor.
    jacobian : bool
        Also add the Jacobian of ``outputs`` (of the ensemble mean) with respect to ``x``.

    Returns
    -------
    dict
        Output name (``outputs``, ``std`` for an ensemble, ``jacobian``) to float32 tensor name,
        in the order of :func:`output_shapes`.
    """
    _check_fitted(model)
    nets = members(model)
    forwards = [emit_forward(g, net, x) for net in nets]
    if isinstance(model, SurrogateEnsemble):
        result = _emit_mean_and_std(g, [f.outputs64 for f in forwards])
    else:
        result = {OUTPUT_TENSOR: g.op("Cast", forwards[0].outputs64, to=TensorProto.FLOAT)}
    if jacobian:
        jacobians = [emit_jacobian(g, net, x, f) for net, f in zip(nets, forwards, strict=True)]
        result[JACOBIAN_TENSOR] = jacobians[0] if len(nets) == 1 else _mean(g, jacobians)
    return result


def _mean(g: GraphBuilder, tensors: list[str], dtype=np.float32) -> str:
    # Binary Adds, then a scale: onnxruntime has no float64 kernel for Mean, and formula export
    # (training.formula) translates elementwise binary ops.
    total = tensors[0]
    for tensor in tensors[1:]:
        total = g.op("Add", total, tensor)
    return g.op("Mul", total, g.const(1.0 / len(tensors), "inv_k", dtype=dtype))


def _emit_mean_and_std(g: GraphBuilder, outputs64: list[str]) -> dict[str, str]:
    """The members' mean and population standard deviation, computed in float64."""
    mean = _mean(g, outputs64, np.float64)
    squares = [g.op("Mul", d, d) for d in (g.op("Sub", y, mean) for y in outputs64)]
    std = g.op("Sqrt", _mean(g, squares, np.float64))
    return {
        OUTPUT_TENSOR: g.op("Cast", mean, to=TensorProto.FLOAT),
        STD_TENSOR: g.op("Cast", std, to=TensorProto.FLOAT),
    }


# Every output the exporter writes is float32 (the card's V2 datatype of each).
OUTPUT_DATATYPE = "FP32"


def output_shapes(model, *, jacobian: bool = False) -> dict[str, list[int]]:
    """Name and shape (``-1`` for the batch) of every output :func:`emit_model` adds."""
    n_in, n_out = model.n_features_in_, model.n_outputs_
    shapes = {OUTPUT_TENSOR: [-1, n_out]}
    if isinstance(model, SurrogateEnsemble):
        shapes[STD_TENSOR] = [-1, n_out]
    if jacobian:
        shapes[JACOBIAN_TENSOR] = [-1, n_out, n_in]
    return shapes


def describe(model) -> dict[str, Any]:
    """Layer sizes, activations and scaling of a fitted model, as JSON-ready data.

    The members of an ensemble share them (they differ only in seed), so the first is described.

    Returns
    -------
    dict
        ``{"layers": [{"units", "activation"}, ...], "scaling": {"inputs", "outputs"}}``.
    """
    _check_fitted(model)
    net = members(model)[0]
    layers = [
        {"units": int(np.shape(coef)[1]), "activation": str(activation)}
        for coef, activation in zip(net.coefs_, net.activations_, strict=True)
    ]
    scaling = {"inputs": net.x_scaler_.to_dict(), "outputs": net.y_scaler_.to_dict()}
    return {"layers": layers, "scaling": scaling}


def to_onnx(
    model,
    *,
    name: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    jacobian: bool = False,
) -> onnx.ModelProto:
    """Export a fitted ``SurrogateMLP`` or ``SurrogateEnsemble`` to a checked ONNX model.

    Parameters
    ----------
    model : SurrogateMLP or SurrogateEnsemble
        A fitted model.
    name : str, optional
        Graph name; defaults to the estimator's class name.
    metadata : mapping, optional
        Extra ``metadata_props``; non-string values are stored as JSON. They are added to (and
        override) ``surrogate.layers`` and ``surrogate.scaling``, which are always present.
    jacobian : bool, default=False
        Add the output ``jacobian`` (the bundle's ``jacobian.onnx``); without it the graph
        computes nothing but the other outputs.

    Returns
    -------
    onnx.ModelProto
        Input ``inputs`` float32 ``[N, n_features_in_]``; outputs float32 in physical units, as
        :func:`output_shapes` lists them: ``outputs`` ``[N, n_outputs_]``, for an ensemble
        ``std`` ``[N, n_outputs_]``, and with ``jacobian=True`` ``jacobian``
        ``[N, n_outputs_, n_features_in_]``. Opset and IR version from ``training.graph``.

    Raises
    ------
    sklearn.exceptions.NotFittedError
        If the model has not been fitted.
    """
    _check_fitted(model)
    g = GraphBuilder()
    for output, tensor in emit_model(g, model, INPUT_TENSOR, jacobian=jacobian).items():
        g.rename(tensor, output)
    props = {f"surrogate.{key}": value for key, value in describe(model).items()}
    props.update(metadata or {})
    props = {
        key: value if isinstance(value, str) else json.dumps(value) for key, value in props.items()
    }
    outputs = [
        float_tensor(output, *shape[1:])
        for output, shape in output_shapes(model, jacobian=jacobian).items()
    ]
    onnx_model = g.make_model(
        [float_tensor(INPUT_TENSOR, model.n_features_in_)],
        outputs,
        name or type(model).__name__,
        props,
    )
    onnx.checker.check_model(onnx_model, full_check=True)
    return onnx_model


class _ScopedBuilder(GraphBuilder):
    """A GraphBuilder whose tensor names are reserved in a skl2onnx scope, so they stay unique."""

    def __init__(self, scope) -> None:
        super().__init__()
        self._scope = scope

    def fresh(self, hint: str) -> str:
        return self._scope.get_unique_variable_name(hint)


def _shape_calculator(operator) -> None:
    check_input_and_output_numbers(operator, input_count_range=1, output_count_range=1)
    check_input_and_output_types(operator, good_input_types=[FloatTensorType])
    n = operator.inputs[0].get_first_dimension()
    operator.outputs[0].type = FloatTensorType([n, operator.raw_operator.n_outputs_])


def _converter(scope, operator, container) -> None:
    if container.target_opset < OPSET:
        raise RuntimeError(
            f"SurrogateMLP converts at target_opset >= {OPSET}, got {container.target_opset}"
        )
    g = _ScopedBuilder(scope)
    out = emit_network(g, operator.raw_operator, operator.inputs[0].full_name)
    g.rename(out, operator.outputs[0].full_name)
    for tensor in g.initializers:
        container.add_initializer(tensor.name, tensor.data_type, list(tensor.dims), tensor)
    for node in g.nodes:
        attrs = {attr.name: helper.get_attribute_value(attr) for attr in node.attribute}
        container.add_node(
            node.op_type,
            list(node.input),
            list(node.output),
            name=scope.get_unique_operator_name(node.op_type),
            **attrs,
        )


# Registering on import is how skl2onnx learns about third-party estimators; importing this
# module is enough for skl2onnx.to_onnx to convert Pipelines that contain a SurrogateMLP.
update_registered_converter(SurrogateMLP, "SurrogateMLP", _shape_calculator, _converter)
