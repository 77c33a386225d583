"""ONNX emission of the activations and of their derivatives, the graph side of the registry in
:mod:`training.activations`: each builder adds nodes to a :class:`GraphBuilder` and returns the
result's name.

Derivatives are emitted in float32, like the hidden layers they serve. Comparisons are strict,
so a kink takes the same one-sided value as the numpy derivative.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # only exporting emits ONNX: fitting a model does not load onnx
    from training.graph import GraphBuilder

Params = Mapping[str, np.ndarray]
Emitter = Callable[["GraphBuilder", str, Params], str]

INV_SQRT2 = 1.0 / math.sqrt(2.0)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def native(op_type: str, **attrs) -> Emitter:
    """Emission as one native ONNX node."""
    return lambda g, x, params: g.op(op_type, x, **attrs)


def clip(low: float, high: float) -> Emitter:
    """Emission as ``Clip`` (its bounds are inputs, 0-d constants, since opset 11)."""
    return lambda g, x, params: g.op(
        "Clip", x, g.const(np.float32(low), "clip_min"), g.const(np.float32(high), "clip_max")
    )


def emit_identity(g: GraphBuilder, x: str, params: Params) -> str:
    return x


def emit_prelu(g: GraphBuilder, x: str, params: Params) -> str:
    return g.op("PRelu", x, g.const(params["slope"], "prelu_slope"))


def emit_silu(g: GraphBuilder, x: str, params: Params) -> str:
    # ONNX Swish exists only from opset 24; x * Sigmoid(x) is exact and runs everywhere.
    return g.op("Mul", x, g.op("Sigmoid", x))


def _f(g: GraphBuilder, value: float, hint: str = "d") -> str:
    return g.const(np.float32(value), hint)


def d_constant(value: float) -> Emitter:
    """A constant, as a scalar: for use inside ``Where``, which broadcasts it."""
    return lambda g, z, params: _f(g, value)


def d_ones(g: GraphBuilder, z: str, params: Params) -> str:
    return g.op("Expand", _f(g, 1.0), g.op("Shape", z))


def d_positive(below: Emitter, above: float = 1.0):
    """``above`` where z > 0, else whatever ``below`` emits."""
    return lambda g, z, params: g.op(
        "Where", g.op("Greater", z, _f(g, 0.0)), _f(g, above), below(g, z, params)
    )


def d_inside(low: float, high: float, slope: float = 1.0):
    """``slope`` strictly inside (low, high), 0 outside: the derivative of a clip."""

    def emit(g: GraphBuilder, z: str, params: Params) -> str:
        inside = g.op("And", g.op("Greater", z, _f(g, low)), g.op("Less", z, _f(g, high)))
        return g.op("Where", inside, _f(g, slope), _f(g, 0.0))

    return emit


def d_exp_negative(scale: float):
    """``scale * exp(min(z, 0))``: the negative branch of ELU's and SELU's derivative."""
    return lambda g, z, params: g.op(
        "Mul", _f(g, scale), g.op("Exp", g.op("Min", z, _f(g, 0.0)))
    )


def d_prelu(g: GraphBuilder, z: str, params: Params) -> str:
    return d_positive(lambda g, z, p: g.const(p["slope"], "prelu_slope"))(g, z, params)


def _one_minus_square(g: GraphBuilder, t: str) -> str:
    return g.op("Sub", _f(g, 1.0), g.op("Mul", t, t))


def d_gelu(g: GraphBuilder, z: str, params: Params) -> str:
    cdf = g.op("Erf", g.op("Mul", z, _f(g, INV_SQRT2)))
    cdf = g.op("Mul", _f(g, 0.5), g.op("Add", _f(g, 1.0), cdf))
    zc = g.op("Clip", z, _f(g, -40.0), _f(g, 40.0))  # keeps z**2 finite, as _normal_pdf does
    pdf = g.op("Exp", g.op("Mul", _f(g, -0.5), g.op("Mul", zc, zc)))
    return g.op("Add", cdf, g.op("Mul", z, g.op("Mul", _f(g, INV_SQRT_2PI), pdf)))


def d_silu(g: GraphBuilder, z: str, params: Params) -> str:
    s = g.op("Sigmoid", z)
    return g.op("Mul", s, g.op("Add", _f(g, 1.0), g.op("Mul", z, g.op("Sub", _f(g, 1.0), s))))


def d_mish(g: GraphBuilder, z: str, params: Params) -> str:
    t = g.op("Tanh", g.op("Softplus", z))
    return g.op("Add", t, g.op("Mul", g.op("Mul", z, _one_minus_square(g, t)), g.op("Sigmoid", z)))


def d_softsign(g: GraphBuilder, z: str, params: Params) -> str:
    r = g.op("Reciprocal", g.op("Add", _f(g, 1.0), g.op("Abs", z)))
    return g.op("Mul", r, r)


def d_logistic(g: GraphBuilder, z: str, params: Params) -> str:
    # s(z) * s(-z) rather than s * (1 - s): no cancellation where s is close to 1.
    return g.op("Mul", g.op("Sigmoid", z), g.op("Sigmoid", g.op("Neg", z)))


def d_tanh(g: GraphBuilder, z: str, params: Params) -> str:
    return _one_minus_square(g, g.op("Tanh", z))


def d_hardswish(g: GraphBuilder, z: str, params: Params) -> str:
    middle = g.op("Add", g.op("Mul", z, _f(g, 1.0 / 3.0)), _f(g, 0.5))
    below = g.op("Where", g.op("Less", z, _f(g, -3.0)), _f(g, 0.0), middle)
    return g.op("Where", g.op("Greater", z, _f(g, 3.0)), _f(g, 1.0), below)
