"""The activation registry: forward, derivative, weight-init rule and ONNX emission per function.

Every activation is one entry in ``_REGISTRY``; the estimator and the exporter look entries up by
name and never branch on it. Derivatives are computed from the pre-activation ``z`` (not from the
output, as scikit-learn does), which is what SiLU, GELU and Mish need.

Forward passes are written to stay finite and warning-free for any float64 input: exponentials are
only ever taken of non-positive arguments, softplus is ``logaddexp(0, z)`` and the logistic is
``scipy.special.expit``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
from scipy.special import erf, expit

from training.graph import GraphBuilder

__all__ = ["ACTIVATIONS", "INIT_RULES", "Activation", "get_activation", "init_std"]

Params = Mapping[str, np.ndarray]

# Standard deviation of the normal weight initialisation, per rule.
INIT_RULES: dict[str, Callable[[int, int], float]] = {
    "he": lambda fan_in, fan_out: math.sqrt(2.0 / fan_in),
    "lecun": lambda fan_in, fan_out: math.sqrt(1.0 / fan_in),
    "glorot": lambda fan_in, fan_out: math.sqrt(2.0 / (fan_in + fan_out)),
}

LEAKY_SLOPE = 0.01
# SELU constants (Klambauer et al. 2017), to float64 precision.
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


@dataclass(frozen=True, eq=False)
class Activation:
    """One activation function and everything the estimator and the exporter need from it.

    Attributes
    ----------
    name : str
        Canonical name.
    forward : callable
        ``forward(z, params) -> a`` on the pre-activation ``z`` (float64).
    derivative : callable
        ``derivative(z, params) -> da/dz`` elementwise, from the pre-activation.
    init : {"he", "lecun", "glorot"}
        Weight-initialisation rule, see :func:`init_std`.
    emit : callable
        ``emit(g, x, params) -> name`` adds the function to a :class:`GraphBuilder`.
    aliases : tuple of str
        Other names that resolve to this entry.
    param_init : mapping
        Learnable per-unit parameters and their initial value (PReLU's ``slope``).
    param_grad : callable or None
        ``param_grad(z, params) -> {name: da/dparam}`` elementwise, for learnable parameters.
    """

    name: str
    forward: Callable[[np.ndarray, Params], np.ndarray]
    derivative: Callable[[np.ndarray, Params], np.ndarray]
    init: str
    emit: Callable[[GraphBuilder, str, Params], str]
    aliases: tuple[str, ...] = ()
    param_init: Mapping[str, float] = field(default_factory=dict)
    param_grad: Callable[[np.ndarray, Params], dict[str, np.ndarray]] | None = None


def init_std(rule: str, fan_in: int, fan_out: int) -> float:
    """Standard deviation of the normal weight initialisation for a layer.

    Parameters
    ----------
    rule : {"he", "lecun", "glorot"}
        The activation's ``init`` rule.
    fan_in, fan_out : int
        Layer input and output widths.

    Returns
    -------
    float
    """
    try:
        return INIT_RULES[rule](fan_in, fan_out)
    except KeyError:
        raise ValueError(f"unknown init rule {rule!r}; valid rules: {sorted(INIT_RULES)}") from None


def _native(op_type: str, **attrs) -> Callable[[GraphBuilder, str, Params], str]:
    """Emission as one native ONNX node."""
    return lambda g, x, params: g.op(op_type, x, **attrs)


def _clip(low: float, high: float) -> Callable[[GraphBuilder, str, Params], str]:
    """Emission as ``Clip`` (its bounds are inputs, 0-d constants, since opset 11)."""
    return lambda g, x, params: g.op(
        "Clip", x, g.const(np.float32(low), "clip_min"), g.const(np.float32(high), "clip_max")
    )


def _emit_identity(g: GraphBuilder, x: str, params: Params) -> str:
    return x


def _emit_prelu(g: GraphBuilder, x: str, params: Params) -> str:
    return g.op("PRelu", x, g.const(params["slope"], "prelu_slope"))


def _emit_silu(g: GraphBuilder, x: str, params: Params) -> str:
    # ONNX Swish exists only from opset 24; x * Sigmoid(x) is exact and runs everywhere.
    return g.op("Mul", x, g.op("Sigmoid", x))


def _elu(z: np.ndarray) -> np.ndarray:
    return np.where(z > 0, z, np.expm1(np.minimum(z, 0.0)))


def _elu_grad(z: np.ndarray) -> np.ndarray:
    return np.where(z > 0, 1.0, np.exp(np.minimum(z, 0.0)))


def _softplus(z: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, z)


def _normal_cdf(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + erf(z * _INV_SQRT2))


def _normal_pdf(z: np.ndarray) -> np.ndarray:
    # Clipping keeps z**2 finite; the density is exactly 0 in float64 well before |z| = 40.
    zc = np.clip(z, -40.0, 40.0)
    return _INV_SQRT_2PI * np.exp(-0.5 * zc * zc)


def _silu_grad(z: np.ndarray) -> np.ndarray:
    s = expit(z)
    return s * (1.0 + z * (1.0 - s))


def _mish(z: np.ndarray) -> np.ndarray:
    return z * np.tanh(_softplus(z))


def _mish_grad(z: np.ndarray) -> np.ndarray:
    t = np.tanh(_softplus(z))
    return t + z * (1.0 - t * t) * expit(z)


def _hardswish_grad(z: np.ndarray) -> np.ndarray:
    return np.where(z > 3.0, 1.0, np.where(z < -3.0, 0.0, (2.0 * z + 3.0) / 6.0))


def _inside(z: np.ndarray, low: float, high: float, slope: float = 1.0) -> np.ndarray:
    """Derivative of a clip: ``slope`` strictly inside (low, high), 0 outside."""
    return np.where((z > low) & (z < high), slope, 0.0)


def _ones(z: np.ndarray) -> np.ndarray:
    return np.ones_like(z, dtype=np.float64)


# The registry: adding an activation is adding one entry here. Positional fields are
# (name, forward, derivative, init, emit, aliases).
_REGISTRY: tuple[Activation, ...] = (
    Activation(
        "identity", lambda z, p: z, lambda z, p: _ones(z), "glorot", _emit_identity, ("linear",)
    ),
    Activation(
        "relu",
        lambda z, p: np.maximum(z, 0.0),
        lambda z, p: np.where(z > 0, 1.0, 0.0),
        "he",
        _native("Relu"),
    ),
    Activation(
        "leaky_relu",
        lambda z, p: np.where(z > 0, z, LEAKY_SLOPE * z),
        lambda z, p: np.where(z > 0, 1.0, LEAKY_SLOPE),
        "he",
        _native("LeakyRelu", alpha=LEAKY_SLOPE),
    ),
    Activation(
        "prelu",
        lambda z, p: np.where(z > 0, z, p["slope"] * z),
        lambda z, p: np.where(z > 0, 1.0, p["slope"] * _ones(z)),
        "he",
        _emit_prelu,
        param_init={"slope": 0.25},
        param_grad=lambda z, p: {"slope": np.minimum(z, 0.0)},
    ),
    Activation(
        "elu", lambda z, p: _elu(z), lambda z, p: _elu_grad(z), "he", _native("Elu", alpha=1.0)
    ),
    Activation(
        "selu",
        lambda z, p: SELU_SCALE * np.where(z > 0, z, SELU_ALPHA * np.expm1(np.minimum(z, 0.0))),
        lambda z, p: SELU_SCALE * np.where(z > 0, 1.0, SELU_ALPHA * np.exp(np.minimum(z, 0.0))),
        "lecun",
        _native("Selu"),
    ),
    # CELU with alpha = 1 coincides with ELU; it is kept as its own name because users ask for it.
    Activation(
        "celu", lambda z, p: _elu(z), lambda z, p: _elu_grad(z), "he", _native("Celu", alpha=1.0)
    ),
    Activation(
        "gelu",
        lambda z, p: z * _normal_cdf(z),
        lambda z, p: _normal_cdf(z) + z * _normal_pdf(z),
        "he",
        _native("Gelu", approximate="none"),
    ),
    Activation(
        "silu", lambda z, p: z * expit(z), lambda z, p: _silu_grad(z), "he", _emit_silu, ("swish",)
    ),
    Activation("mish", lambda z, p: _mish(z), lambda z, p: _mish_grad(z), "he", _native("Mish")),
    Activation(
        "softplus", lambda z, p: _softplus(z), lambda z, p: expit(z), "glorot", _native("Softplus")
    ),
    Activation(
        "softsign",
        lambda z, p: z / (1.0 + np.abs(z)),
        lambda z, p: np.square(1.0 / (1.0 + np.abs(z))),
        "glorot",
        _native("Softsign"),
    ),
    Activation(
        "logistic",
        lambda z, p: expit(z),
        lambda z, p: expit(z) * expit(-z),
        "glorot",
        _native("Sigmoid"),
        ("sigmoid",),
    ),
    Activation(
        "hard_sigmoid",
        lambda z, p: np.clip(z / 6.0 + 0.5, 0.0, 1.0),
        lambda z, p: _inside(z, -3.0, 3.0, 1.0 / 6.0),
        "glorot",
        _native("HardSigmoid", alpha=1.0 / 6.0, beta=0.5),
    ),
    Activation(
        "tanh",
        lambda z, p: np.tanh(z),
        lambda z, p: 1.0 - np.tanh(z) ** 2,
        "glorot",
        _native("Tanh"),
    ),
    Activation(
        "hardtanh",
        lambda z, p: np.clip(z, -1.0, 1.0),
        lambda z, p: _inside(z, -1.0, 1.0),
        "glorot",
        _clip(-1.0, 1.0),
    ),
    Activation(
        "relu6",
        lambda z, p: np.clip(z, 0.0, 6.0),
        lambda z, p: _inside(z, 0.0, 6.0),
        "he",
        _clip(0.0, 6.0),
    ),
    Activation(
        "hardswish",
        lambda z, p: z * np.clip(z + 3.0, 0.0, 6.0) / 6.0,
        lambda z, p: _hardswish_grad(z),
        "he",
        _native("HardSwish"),
    ),
)

ACTIVATIONS: tuple[str, ...] = tuple(entry.name for entry in _REGISTRY)
_BY_NAME: dict[str, Activation] = {
    name: entry for entry in _REGISTRY for name in (entry.name, *entry.aliases)
}


def _valid_names() -> str:
    return ", ".join(
        f"{e.name} ({', '.join(e.aliases)})" if e.aliases else e.name for e in _REGISTRY
    )


def get_activation(name: str) -> Activation:
    """Look an activation up by canonical name or alias.

    Parameters
    ----------
    name : str
        E.g. ``"relu"``, ``"swish"`` (alias of ``"silu"``).

    Returns
    -------
    Activation

    Raises
    ------
    ValueError
        If the name is unknown; the message lists the valid names and aliases.
    """
    try:
        return _BY_NAME[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown activation {name!r}; valid names (aliases): {_valid_names()}"
        ) from None
