"""The exact Jacobian of a network's physical outputs with respect to its physical inputs, as ONNX.

The chain rule is written into the graph next to the forward pass it differentiates, in the
cheaper of two orders (the work is that of one forward pass per input, or per output):

- forward mode (no fewer outputs than inputs): ``d z / d x`` is carried from the first layer up
  as ``[n_inputs, N, units]``;
- reverse mode (fewer outputs than inputs, the usual surrogate): ``d out / d z`` is carried from
  the output layer down as ``[n_outputs, N, units]``.

Either way each layer is one batched ``MatMul`` by the layer's weights (transposed in reverse
mode) and one ``Mul`` by the activation's derivative at the layer's pre-activation (emitted by
the activation's registry entry), which broadcasts from ``[N, units]`` without reshaping. The
input scaling enters through the first layer's weights (divided by the scale in float64 before
rounding to float32), a log input through ``1 / x``; the output scaling multiplies by the scale,
and by the physical output (in float64) for a log output. The result is transposed to the
contract's ``[N, n_outputs, n_inputs]``.

The derivative otherwise runs in float32: unlike the forward pass it cancels no large terms (a
product of factors, each rounded once), so float64 would buy nothing but time.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from training.activations import get_activation
from training.graph import GraphBuilder

__all__ = ["emit_jacobian", "reverse_mode"]


def reverse_mode(model) -> bool:
    """Whether :func:`emit_jacobian` differentiates ``model`` from the outputs down."""
    return model.n_outputs_ < model.n_features_in_


def emit_jacobian(g: GraphBuilder, model, x: str, forward) -> str:
    """Add ``d outputs / d inputs`` of one fitted network to ``g``.

    Parameters
    ----------
    g : GraphBuilder
        The builder that already holds the network's forward pass.
    model : SurrogateMLP
        The fitted network.
    x : str
        Name of the float32 ``[N, n_features_in_]`` physical input tensor.
    forward : training.export.Forward
        Its forward pass in ``g`` (:func:`training.export.emit_forward`).

    Returns
    -------
    str
        Name of the float32 ``[N, n_outputs_, n_features_in_]`` Jacobian, physical units.
    """
    layers = list(
        zip(forward.pre, model.coefs_, model.activations_, model.activation_params_, strict=True)
    )
    if reverse_mode(model):
        d = _emit_reverse(g, model.x_scaler_, x, layers)
    else:
        d = g.op("Transpose", _emit_forward(g, model.x_scaler_, x, layers), perm=[2, 1, 0])
    d = _emit_output_scaling(g, model.y_scaler_, d, forward.outputs64)
    return g.op("Transpose", d, perm=[1, 0, 2])


def _derivative(g: GraphBuilder, activation: str, z: str, params) -> str:
    return get_activation(activation).emit_derivative(g, z, params)


def _scaled_first_weights(scaler, coef) -> np.ndarray:
    """``W1 / scale`` per input row: the first layer's weights on physical (or log) inputs."""
    scale = np.asarray(scaler.scale_, dtype=np.float64)
    return np.asarray(coef, dtype=np.float64) / scale[:, None]


def _emit_forward(g: GraphBuilder, scaler, x: str, layers) -> str:
    """``d out / d x`` carried upwards as ``[n_inputs, N, units]``."""
    d = None
    for z, coef, activation, params in layers:
        if d is None:
            d = _emit_input_derivative(g, scaler, x, coef)
        else:
            d = g.op("MatMul", d, g.const(coef, "W"))
        d = g.op("Mul", d, _derivative(g, activation, z, params))
    return d


def _emit_input_derivative(g: GraphBuilder, scaler, x: str, coef) -> str:
    """``d z1 / d x`` as ``[n_inputs, 1, units]`` (``[n_inputs, N, units]`` for log inputs)."""
    first = _scaled_first_weights(scaler, coef)[:, None, :]
    if scaler.method != "log":
        return g.const(first, "dz1_dx")
    # d log(x) / dx = 1 / x, per row: [N, n_in] -> [n_in, N, 1].
    inverse = g.op("Transpose", g.op("Reciprocal", x), perm=[1, 0])
    inverse = g.op("Unsqueeze", inverse, g.const(np.array([2]), "axes", dtype=np.int64))
    return g.op("Mul", inverse, g.const(first, "dz1_dlogx"))


def _emit_reverse(g: GraphBuilder, scaler, x: str, layers) -> str:
    """``d out / d x`` carried downwards as ``[n_outputs, N, units]``, ending ``[n_outputs, N,
    n_inputs]``."""
    n_out = np.shape(layers[-1][1])[1]
    d = g.const(np.eye(n_out)[:, None, :], "seed")  # [n_out, 1, n_out]: one row per output
    for index in range(len(layers) - 1, -1, -1):
        z, coef, activation, params = layers[index]
        d = g.op("Mul", d, _derivative(g, activation, z, params))
        weights = _scaled_first_weights(scaler, coef) if index == 0 else np.asarray(coef)
        d = g.op("MatMul", d, g.const(weights.T, "W_T"))
    if scaler.method == "log":
        d = g.op("Mul", d, g.op("Reciprocal", x))  # d log(x) / dx, broadcast over outputs
    return d


def _emit_output_scaling(g: GraphBuilder, scaler, d: str, outputs64: str) -> str:
    """Multiply ``[n_outputs, N, n_inputs]`` by ``d y / d out``: the scale, times y for log."""
    scale = np.asarray(scaler.scale_, dtype=np.float64)[:, None, None]
    if scaler.method != "log":
        return g.op("Mul", d, g.const(scale, "dy_dout")) if np.any(scale != 1) else d
    # In float64: y may exceed float32 while the derivative times y does not (a saturated unit
    # times a huge y is 0, not inf * 0 = NaN).
    y = g.op("Unsqueeze", g.op("Transpose", outputs64, perm=[1, 0]),
             g.const(np.array([2]), "axes", dtype=np.int64))  # fmt: skip
    factor = g.op("Mul", y, g.const(scale, "dy_dout", dtype=np.float64))
    d = g.op("Mul", g.op("Cast", d, to=TensorProto.DOUBLE), factor)
    return g.op("Cast", d, to=TensorProto.FLOAT)
