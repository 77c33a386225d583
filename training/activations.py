"""The activation registry: forward, derivative, weight-init rule and ONNX emission per function.

Every activation is one entry in ``_REGISTRY``; the estimator and the exporter look entries up by
name and never branch on it. Derivatives are computed from the pre-activation ``z`` (not from the
output, as scikit-learn does), which is what SiLU, GELU and Mish need; each entry emits its
derivative to ONNX as well (``emit_derivative``, for the exported Jacobian), and lists the points
where that derivative jumps (``kinks``).

Forward passes are written to stay finite and warning-free for any float64 input: exponentials are
only ever taken of non-positive arguments, softplus is ``logaddexp(0, z)`` and the logistic is
``scipy.special.expit``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import numpy as np
from scipy.special import erf, expit

from training.activation_onnx import (
    INV_SQRT2,
    INV_SQRT_2PI,
    Emitter,
    Params,
    clip,
    d_constant,
    d_exp_negative,
    d_gelu,
    d_hardswish,
    d_inside,
    d_logistic,
    d_mish,
    d_ones,
    d_positive,
    d_prelu,
    d_silu,
    d_softsign,
    d_tanh,
    emit_identity,
    emit_prelu,
    emit_silu,
    native,
)
from training.errors import ParameterError

__all__ = ["ACTIVATIONS", "INIT_RULES", "Activation", "get_activation", "init_std"]

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
    emit_derivative : callable
        ``emit_derivative(g, z, params) -> name`` adds ``da/dz`` (float32, shaped like the
        pre-activation ``z`` it is computed from) to a :class:`GraphBuilder`; it takes the same
        one-sided value at a kink as ``derivative``.
    kinks : tuple of float
        Pre-activation values where the derivative jumps (empty for C1 functions).
    output_derivative : callable or None
        ``output_derivative(a) -> da/dz`` from the output ``a = forward(z)``, for functions
        where that is exact and cheaper than ``derivative`` (tanh: ``1 - a**2``): training uses
        it in backpropagation, where the outputs are at hand, to skip recomputing the function.
    cost_ns : float
        Nanoseconds per element (row and unit) an L-BFGS iteration of a fit (its gradient and
        line-search evaluations) spends on this function and its derivative beyond what tanh
        costs (0 for those no dearer): the work model (``training.plan``) is calibrated on tanh
        networks and adds this, so that a plan, and the time slots of a selection, fit the
        activation. Measured per iteration of fixed-alpha fits (8-64-64-1 on 1000 borehole rows,
        alpha 1e-5, one thread; tanh 1.35 ms an iteration, ELU 2.24, SELU 2.34, SiLU 2.28,
        logistic 2.89, sine 3.39, softplus 3.78, GELU 4.56, Mish 7.87).
    """

    name: str
    forward: Callable[[np.ndarray, Params], np.ndarray]
    derivative: Callable[[np.ndarray, Params], np.ndarray]
    init: str
    emit: Emitter
    aliases: tuple[str, ...] = ()
    param_init: Mapping[str, float] = field(default_factory=dict)
    param_grad: Callable[[np.ndarray, Params], dict[str, np.ndarray]] | None = None
    emit_derivative: Emitter = field(kw_only=True)
    kinks: tuple[float, ...] = field(default=(), kw_only=True)
    output_derivative: Callable[[np.ndarray], np.ndarray] | None = field(
        default=None, kw_only=True
    )
    cost_ns: float = field(default=0.0, kw_only=True)


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
        raise ParameterError(
            f"unknown init rule {rule!r}; valid rules: {sorted(INIT_RULES)}") from None


def _elu(z: np.ndarray) -> np.ndarray:
    return np.where(z > 0, z, np.expm1(np.minimum(z, 0.0)))


def _elu_grad(z: np.ndarray) -> np.ndarray:
    return np.where(z > 0, 1.0, np.exp(np.minimum(z, 0.0)))


def _softplus(z: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, z)


def _normal_cdf(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + erf(z * INV_SQRT2))


def _normal_pdf(z: np.ndarray) -> np.ndarray:
    # Clipping keeps z**2 finite; the density is exactly 0 in float64 well before |z| = 40.
    zc = np.clip(z, -40.0, 40.0)
    return INV_SQRT_2PI * np.exp(-0.5 * zc * zc)


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


def _tanh(z: np.ndarray) -> np.ndarray:
    """``tanh(z)`` as ``sign(z) (1 - e) / (1 + e)`` with ``e = exp(-2 |z|)``: numpy's ``exp`` is
    vectorised where its ``tanh`` is not, and this is 1.7x faster on training batches (75 x 64:
    41 us against 71 us), within 2 ulp of ``np.tanh``."""
    e = np.multiply(np.abs(z), -2.0)
    np.exp(e, out=e)
    t = np.subtract(1.0, e)
    e += 1.0
    np.divide(t, e, out=t)
    return np.copysign(t, z, out=t)


def _one_minus_square_np(a: np.ndarray) -> np.ndarray:
    d = np.multiply(a, a)
    np.subtract(1.0, d, out=d)
    return d


def _ones(z: np.ndarray) -> np.ndarray:
    return np.ones_like(z, dtype=np.float64)


_ELU = Activation(
    "elu",
    lambda z, p: _elu(z),
    lambda z, p: _elu_grad(z),
    "he",
    native("Elu", alpha=1.0),
    emit_derivative=d_positive(d_exp_negative(1.0)),
    cost_ns=7,
)

# The registry: adding an activation is adding one entry here. Positional fields are
# (name, forward, derivative, init, emit, aliases); emit_derivative and kinks are keywords.
_REGISTRY: tuple[Activation, ...] = (
    Activation(
        "identity",
        lambda z, p: z,
        lambda z, p: _ones(z),
        "glorot",
        emit_identity,
        ("linear",),
        emit_derivative=d_ones,
    ),
    Activation(
        "relu",
        lambda z, p: np.maximum(z, 0.0),
        lambda z, p: np.where(z > 0, 1.0, 0.0),
        "he",
        native("Relu"),
        emit_derivative=d_positive(d_constant(0.0)),
        kinks=(0.0,),
        output_derivative=lambda a: (a > 0).astype(np.float64),  # a > 0 exactly when z > 0
    ),
    Activation(
        "leaky_relu",
        lambda z, p: np.where(z > 0, z, LEAKY_SLOPE * z),
        lambda z, p: np.where(z > 0, 1.0, LEAKY_SLOPE),
        "he",
        native("LeakyRelu", alpha=LEAKY_SLOPE),
        emit_derivative=d_positive(d_constant(LEAKY_SLOPE)),
        kinks=(0.0,),
    ),
    Activation(
        "prelu",
        lambda z, p: np.where(z > 0, z, p["slope"] * z),
        lambda z, p: np.where(z > 0, 1.0, p["slope"] * _ones(z)),
        "he",
        emit_prelu,
        param_init={"slope": 0.25},
        param_grad=lambda z, p: {"slope": np.minimum(z, 0.0)},
        emit_derivative=d_prelu,
        kinks=(0.0,),
    ),
    _ELU,
    Activation(
        "selu",
        lambda z, p: SELU_SCALE * np.where(z > 0, z, SELU_ALPHA * np.expm1(np.minimum(z, 0.0))),
        lambda z, p: SELU_SCALE * np.where(z > 0, 1.0, SELU_ALPHA * np.exp(np.minimum(z, 0.0))),
        "lecun",
        native("Selu"),
        emit_derivative=d_positive(d_exp_negative(SELU_SCALE * SELU_ALPHA), SELU_SCALE),
        kinks=(0.0,),
        cost_ns=8,
    ),
    # CELU with alpha = 1 coincides with ELU; it is kept as its own name because users ask for it.
    replace(_ELU, name="celu", emit=native("Celu", alpha=1.0)),
    Activation(
        "gelu",
        lambda z, p: z * _normal_cdf(z),
        lambda z, p: _normal_cdf(z) + z * _normal_pdf(z),
        "he",
        native("Gelu", approximate="none"),
        emit_derivative=d_gelu,
        cost_ns=25,
    ),
    Activation(
        "silu",
        lambda z, p: z * expit(z),
        lambda z, p: _silu_grad(z),
        "he",
        emit_silu,
        ("swish",),
        emit_derivative=d_silu,
        cost_ns=7.5,
    ),
    Activation(
        "mish",
        lambda z, p: _mish(z),
        lambda z, p: _mish_grad(z),
        "he",
        native("Mish"),
        emit_derivative=d_mish,
        cost_ns=51,
    ),
    Activation(
        "softplus",
        lambda z, p: _softplus(z),
        lambda z, p: expit(z),
        "glorot",
        native("Softplus"),
        emit_derivative=lambda g, z, p: g.op("Sigmoid", z),
        cost_ns=19,
    ),
    Activation(
        "softsign",
        lambda z, p: z / (1.0 + np.abs(z)),
        lambda z, p: np.square(1.0 / (1.0 + np.abs(z))),
        "glorot",
        native("Softsign"),
        emit_derivative=d_softsign,
    ),
    Activation(
        "logistic",
        lambda z, p: expit(z),
        lambda z, p: expit(z) * expit(-z),
        "glorot",
        native("Sigmoid"),
        ("sigmoid",),
        emit_derivative=d_logistic,
        cost_ns=12,
    ),
    Activation(
        "hard_sigmoid",
        lambda z, p: np.clip(z / 6.0 + 0.5, 0.0, 1.0),
        lambda z, p: _inside(z, -3.0, 3.0, 1.0 / 6.0),
        "glorot",
        native("HardSigmoid", alpha=1.0 / 6.0, beta=0.5),
        emit_derivative=d_inside(-3.0, 3.0, 1.0 / 6.0),
        kinks=(-3.0, 3.0),
    ),
    Activation(
        "tanh",
        lambda z, p: _tanh(z),
        lambda z, p: _one_minus_square_np(_tanh(z)),
        "glorot",
        native("Tanh"),
        emit_derivative=d_tanh,
        output_derivative=_one_minus_square_np,
    ),
    # Periodic: a network of sines represents a response periodic in its inputs (angles,
    # phases) with few units, where tanh or SiLU need many to follow each period.
    Activation(
        "sin",
        lambda z, p: np.sin(z),
        lambda z, p: np.cos(z),
        "glorot",
        native("Sin"),
        ("sine",),
        emit_derivative=native("Cos"),
        cost_ns=16,
    ),
    Activation(
        "hardtanh",
        lambda z, p: np.clip(z, -1.0, 1.0),
        lambda z, p: _inside(z, -1.0, 1.0),
        "glorot",
        clip(-1.0, 1.0),
        emit_derivative=d_inside(-1.0, 1.0),
        kinks=(-1.0, 1.0),
    ),
    Activation(
        "relu6",
        lambda z, p: np.clip(z, 0.0, 6.0),
        lambda z, p: _inside(z, 0.0, 6.0),
        "he",
        clip(0.0, 6.0),
        emit_derivative=d_inside(0.0, 6.0),
        kinks=(0.0, 6.0),
    ),
    Activation(
        "hardswish",
        lambda z, p: z * np.clip(z + 3.0, 0.0, 6.0) / 6.0,
        lambda z, p: _hardswish_grad(z),
        "he",
        native("HardSwish"),
        emit_derivative=d_hardswish,
        kinks=(-3.0, 3.0),
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
        raise ParameterError(
            f"unknown activation {name!r}; valid names (aliases): {_valid_names()}"
        ) from None
