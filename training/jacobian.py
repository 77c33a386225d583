"""The exact Jacobian of a network's physical outputs with respect to its physical inputs, as ONNX.

Forward-mode chain rule, written into the graph next to the forward pass it differentiates: the
derivative is carried as a ``[n_inputs, N, units]`` tensor, so each layer is one batched
``MatMul`` by the layer's weights and one ``Mul`` by the activation's derivative at the layer's
pre-activation (emitted by the activation's registry entry), which broadcasts from ``[N, units]``
without reshaping. The input scaling enters through the first layer's weights (divided by the
scale, in float64, before rounding to float32), a log input through ``1 / x``; the output
scaling multiplies by the scale, and by the physical output for a log output. The result is
transposed to the contract's ``[N, n_outputs, n_inputs]``.

The derivative runs in float32 throughout: unlike the forward pass it cancels no large terms (a
product of factors, each rounded once), so float64 would buy nothing but time.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from training.activations import get_activation
from training.graph import GraphBuilder

__all__ = ["emit_jacobian"]


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
    layers = zip(
        forward.pre, model.coefs_, model.activations_, model.activation_params_, strict=True
    )
    d = None
    for z, coef, activation, params in layers:
        d = _emit_input_derivative(g, model.x_scaler_, x, coef) if d is None else g.op(
            "MatMul", d, g.const(coef, "W")
        )
        d = g.op("Mul", d, get_activation(activation).emit_derivative(g, z, params))
    d = _emit_output_scaling(g, model.y_scaler_, d, forward.outputs64)
    return g.op("Transpose", d, perm=[1, 2, 0])


def _emit_input_derivative(g: GraphBuilder, scaler, x: str, coef) -> str:
    """``d z1 / d x`` as ``[n_inputs, 1, units]`` (``[n_inputs, N, units]`` for log inputs)."""
    scale = np.asarray(scaler.scale_, dtype=np.float64)
    first = (np.asarray(coef, dtype=np.float64) / scale[:, None])[:, None, :]
    if scaler.method != "log":
        return g.const(first, "dz1_dx")
    # d log(x) / dx = 1 / x, per row: [N, n_in] -> [n_in, N, 1].
    inverse = g.op("Transpose", g.op("Reciprocal", x), perm=[1, 0])
    inverse = g.op("Unsqueeze", inverse, g.const(np.array([2]), "axes", dtype=np.int64))
    return g.op("Mul", inverse, g.const(first, "dz1_dlogx"))


def _emit_output_scaling(g: GraphBuilder, scaler, d: str, outputs64: str) -> str:
    """Multiply ``[n_inputs, N, n_outputs]`` by ``d y / d out``: the scale, times y for log."""
    scale = np.asarray(scaler.scale_, dtype=np.float64)
    if scaler.method != "log":
        return g.op("Mul", d, g.const(scale, "dy_dout")) if np.any(scale != 1) else d
    # In float64: y may exceed float32 while the derivative times y does not (a saturated unit
    # times a huge y is 0, not inf * 0 = NaN).
    d = g.op("Cast", d, to=TensorProto.DOUBLE)
    d = g.op("Mul", d, g.op("Mul", outputs64, g.const(scale, "dy_dout", dtype=np.float64)))
    return g.op("Cast", d, to=TensorProto.FLOAT)
