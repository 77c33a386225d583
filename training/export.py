"""Export a fitted ``SurrogateMLP`` to ONNX: physical units in and out, scaling inside the graph.

One routine, :func:`emit_network`, writes the input scaling, every layer (``Gemm`` then the
activation's own ``emit``) and the inverse output scaling into a
:class:`~training.graph.GraphBuilder`. The hidden layers run in float32; the input scaling with
the first affine map, and the output scaling, run in float64, which is where float32 would lose
digits (see the comments there). :func:`to_onnx` wraps that into a model; the skl2onnx
converter registered on import runs the same routine on a builder whose names are reserved in
skl2onnx's scope and copies the nodes into its container, so a ``Pipeline`` holding the estimator
converts with ``skl2onnx.to_onnx`` as well.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper
from skl2onnx import update_registered_converter
from skl2onnx.common.data_types import FloatTensorType
from skl2onnx.common.utils import check_input_and_output_numbers, check_input_and_output_types
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from training.activations import get_activation
from training.estimator import SurrogateMLP
from training.graph import OPSET, GraphBuilder, float_tensor

__all__ = [
    "INPUT_NAME",
    "OUTPUT_NAME",
    "PARITY_TOLERANCE",
    "ParityError",
    "check_parity",
    "describe",
    "emit_network",
    "parity",
    "run_onnx",
    "to_onnx",
]

INPUT_NAME = "inputs"
OUTPUT_NAME = "outputs"
PARITY_TOLERANCE = 1e-4  # max |onnx - predict| / std(y) an export may ship with
_PROBE_POINTS = 256  # per box, in check_parity
_FITTED = ("coefs_", "intercepts_", "activations_", "activation_params_", "x_scaler_", "y_scaler_")


class ParityError(RuntimeError):
    """The ONNX graph does not reproduce ``predict`` closely enough to be shipped."""


def _check_fitted(model) -> None:
    try:
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
    offset = np.asarray(scaler.offset_, dtype=np.float64)
    if np.any(offset != 0):
        x = g.op("Sub", x, g.const(offset, "x_offset", dtype=np.float64))
    scale = np.asarray(scaler.scale_, dtype=np.float64)
    if np.any(scale != 1):
        x = g.op("Div", x, g.const(scale, "x_scale", dtype=np.float64))
    W, b = g.const(coef, "W", dtype=np.float64), g.const(intercept, "b", dtype=np.float64)
    return g.op("Cast", g.op("Gemm", x, W, b), to=TensorProto.FLOAT)


def _emit_y_unscaling(g: GraphBuilder, scaler, z: str) -> str:
    offset = np.asarray(scaler.offset_, dtype=np.float64)
    scale = np.asarray(scaler.scale_, dtype=np.float64)
    log = scaler.method == "log"
    if not (log or np.any(offset != 0) or np.any(scale != 1)):
        return z
    # float64 again: Exp turns the absolute rounding of ``z * scale + offset`` into relative
    # error of the output, so a float32 sum near, say, log(1e3) would cost ~1e-6 of every value.
    z = g.op("Cast", z, to=TensorProto.DOUBLE)
    if np.any(scale != 1):
        z = g.op("Mul", z, g.const(scale, "y_scale", dtype=np.float64))
    if np.any(offset != 0):
        z = g.op("Add", z, g.const(offset, "y_offset", dtype=np.float64))
    if log:
        z = g.op("Exp", z, name_hint="exp_outputs")
    return g.op("Cast", z, to=TensorProto.FLOAT)


def emit_network(g: GraphBuilder, model, x: str) -> str:
    """Add the whole fitted network to ``g``, from physical inputs to physical outputs.

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
    str
        Name of the float32 ``[N, n_outputs_]`` output tensor.
    """
    _check_fitted(model)
    layers = zip(
        model.coefs_, model.intercepts_, model.activations_, model.activation_params_, strict=True
    )
    a = x
    for index, (coef, intercept, activation, params) in enumerate(layers):
        if index == 0:
            z = _emit_input_layer(g, model.x_scaler_, a, coef, intercept)
        else:
            z = g.op("Gemm", a, g.const(coef, "W"), g.const(intercept, "b"))
        a = get_activation(activation).emit(g, z, params)
    return _emit_y_unscaling(g, model.y_scaler_, a)


def describe(model) -> dict[str, Any]:
    """Layer sizes, activations and scaling of a fitted model, as JSON-ready data.

    Returns
    -------
    dict
        ``{"layers": [{"units", "activation"}, ...], "scaling": {"inputs", "outputs"}}``.
    """
    _check_fitted(model)
    layers = [
        {"units": int(np.shape(coef)[1]), "activation": str(activation)}
        for coef, activation in zip(model.coefs_, model.activations_, strict=True)
    ]
    scaling = {"inputs": model.x_scaler_.to_dict(), "outputs": model.y_scaler_.to_dict()}
    return {"layers": layers, "scaling": scaling}


def to_onnx(
    model, *, name: str | None = None, metadata: Mapping[str, Any] | None = None
) -> onnx.ModelProto:
    """Export a fitted ``SurrogateMLP`` to a checked ONNX model.

    Parameters
    ----------
    model : SurrogateMLP
        A fitted estimator.
    name : str, optional
        Graph name; defaults to the estimator's class name.
    metadata : mapping, optional
        Extra ``metadata_props``; non-string values are stored as JSON. They are added to (and
        override) ``surrogate.layers`` and ``surrogate.scaling``, which are always present.

    Returns
    -------
    onnx.ModelProto
        Input ``inputs`` float32 ``[N, n_features_in_]``, output ``outputs`` float32
        ``[N, n_outputs_]``, both in physical units; opset and IR version from ``training.graph``.

    Raises
    ------
    sklearn.exceptions.NotFittedError
        If the model has not been fitted.
    """
    _check_fitted(model)
    g = GraphBuilder()
    g.rename(emit_network(g, model, INPUT_NAME), OUTPUT_NAME)
    props = {f"surrogate.{key}": value for key, value in describe(model).items()}
    props.update(metadata or {})
    props = {
        key: value if isinstance(value, str) else json.dumps(value) for key, value in props.items()
    }
    onnx_model = g.make_model(
        [float_tensor(INPUT_NAME, model.n_features_in_)],
        [float_tensor(OUTPUT_NAME, model.n_outputs_)],
        name or type(model).__name__,
        props,
    )
    onnx.checker.check_model(onnx_model, full_check=True)
    return onnx_model


def run_onnx(onnx_model: onnx.ModelProto, X) -> np.ndarray:
    """Run the model's first output on ``X`` (cast to float32) in onnxruntime on the CPU."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(
        onnx_model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    feed = {session.get_inputs()[0].name: np.asarray(X, dtype=np.float32)}
    return session.run([session.get_outputs()[0].name], feed)[0]


def _as_fitted_input(model, X32: np.ndarray):
    """The float32 points as float64, in a DataFrame when the model was fit on one."""
    X = X32.astype(np.float64)
    names = getattr(model, "feature_names_in_", None)
    if names is None:
        return X
    import pandas as pd

    return pd.DataFrame(X, columns=names)


def parity(model, onnx_model: onnx.ModelProto, X) -> float:
    """Largest deviation of onnxruntime from ``model.predict``, relative to the spread of y.

    Both sides see the same float32-rounded points, so only the graph's own error is measured.

    Parameters
    ----------
    model : estimator
        Anything with ``predict`` (a ``SurrogateMLP`` or a Pipeline ending in one).
    onnx_model : onnx.ModelProto
        Its export; the first input and first output are used.
    X : array-like of shape (n_samples, n_features)
        Points to compare on, at least two.

    Returns
    -------
    float
        ``max |onnx - predict| / std(predict)`` over samples, per output column (a column whose
        predictions are constant is measured against its largest magnitude, or 1 if that is 0).
        Infinities that both sides produce agree; ``inf`` for a NaN or a one-sided infinity.
    """
    X32 = np.asarray(X, dtype=np.float32)
    if X32.ndim != 2 or len(X32) < 2:
        raise ValueError(f"parity needs a 2-D array of at least two points, got shape {X32.shape}")
    expected = np.asarray(model.predict(_as_fitted_input(model, X32)), dtype=np.float64)
    expected = expected.reshape(len(X32), -1)
    got = run_onnx(onnx_model, X32).astype(np.float64)
    if got.shape != expected.shape:
        raise ValueError(f"ONNX output shape {got.shape} != predict shape {expected.shape}")
    return _relative_deviation(got, expected)


def _relative_deviation(got: np.ndarray, expected: np.ndarray) -> float:
    # Equal values agree, equal infinities included (an overflow both sides make); a NaN or a
    # one-sided infinity is an infinite deviation. The spread comes from the finite values.
    agree = got == expected
    diff = np.abs(np.subtract(got, expected, out=np.zeros_like(got), where=~agree))
    if not np.isfinite(diff).all():
        return float("inf")
    finite = np.ma.masked_invalid(expected)
    spread = finite.std(axis=0).filled(0.0)
    largest = np.abs(finite).max(axis=0).filled(0.0)
    spread = np.where(spread > 0, spread, np.where(largest > 0, largest, 1.0))
    return float((diff / spread).max())


def check_parity(
    model,
    onnx_model: onnx.ModelProto,
    low,
    high,
    *,
    tolerance: float = PARITY_TOLERANCE,
    what: str = "the ONNX export",
) -> float:
    """:func:`parity` on random points in the training box and in the box three times as wide.

    The wide box reaches the clips and kinks of the activations. For log-scaled inputs both
    boxes are taken in log space, so the points stay positive.

    Parameters
    ----------
    model, onnx_model
        As for :func:`parity`.
    low, high : array-like of shape (n_features,)
        The training range of every input.
    tolerance : float
        Largest deviation accepted.
    what : str
        Names the model in the error message.

    Returns
    -------
    float
        The deviation.

    Raises
    ------
    ParityError
        If the deviation exceeds ``tolerance`` (or is not finite).
    """
    low, high = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
    log = model.x_scaler_.method == "log"
    if log:
        low, high = np.log(low), np.log(high)
    width = high - low
    rng = np.random.default_rng(0)
    size = (_PROBE_POINTS, len(low))
    X = np.vstack([rng.uniform(low, high, size), rng.uniform(low - width, high + width, size)])
    deviation = parity(model, onnx_model, np.exp(X) if log else X)
    if not deviation <= tolerance:
        raise ParityError(
            f"{what} deviates from predict by {deviation:.3g} x std(y) (limit {tolerance:g}) "
            "on training-range and 3x-range points"
        )
    return deviation


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
