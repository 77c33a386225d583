"""The partial derivatives of every elementwise op :mod:`training.formula` translates, as C99
expressions, so generated C can carry a tangent (a directional derivative) through the network
beside the values: the FMU's exact ``GetDirectionalDerivative``.

A table entry holds one expression per operand, in the placeholders of the op's value template
(``{0}``, ``{1}``: the operands' values; ``{alpha}``...: its attributes, written in as literals).
At a kink (ReLU at 0, a clip bound) one of the one-sided derivatives is used.
"""

from __future__ import annotations

__all__ = ["PARTIALS", "clip_partials", "gelu_partials", "mean_partials"]

_STEP = "({0} > 0.0 ? 1.0 : 0.0)"
# Softplus without overflow, as the value template writes it, and the logistic function.
_SOFTPLUS = "(fmax({0}, 0.0) + log(1.0 + exp(-fabs({0}))))"
_LOGISTIC = "(1.0/(1.0 + exp(-{0})))"

PARTIALS: dict[str, tuple[str, ...]] = {
    "Add": ("1.0", "1.0"),
    "Sub": ("1.0", "-1.0"),
    "Mul": ("{1}", "{0}"),
    "Div": ("1.0/{1}", "-{0}/({1}*{1})"),
    "Neg": ("-1.0",),
    "Abs": ("({0} >= 0.0 ? 1.0 : -1.0)",),
    "Exp": ("exp({0})",),
    "Log": ("1.0/{0}",),
    "Erf": ("1.1283791670955126*exp(-{0}*{0})",),  # 2/sqrt(pi) e^-x^2
    "Tanh": ("(1.0 - tanh({0})*tanh({0}))",),
    "Sin": ("cos({0})",),
    # e^-|x| / (1 + e^-|x|)^2: the logistic's derivative, symmetric and free of overflow.
    "Sigmoid": ("exp(-fabs({0}))/((1.0 + exp(-fabs({0})))*(1.0 + exp(-fabs({0}))))",),
    "Relu": (_STEP,),
    "LeakyRelu": ("({0} > 0.0 ? 1.0 : {alpha})",),
    "PRelu": ("({0} > 0.0 ? 1.0 : {1})", "fmin({0}, 0.0)"),
    "Elu": ("({0} > 0.0 ? 1.0 : {alpha}*exp({0}))",),
    "Celu": ("({0} > 0.0 ? 1.0 : exp({0}/{alpha}))",),
    "Selu": ("{gamma}*({0} > 0.0 ? 1.0 : {alpha}*exp({0}))",),
    "Softplus": (_LOGISTIC,),
    "Softsign": ("1.0/((1.0 + fabs({0}))*(1.0 + fabs({0})))",),
    "HardSigmoid": (
        "({alpha}*{0} + {beta} > 0.0 && {alpha}*{0} + {beta} < 1.0 ? {alpha} : 0.0)",),
    "HardSwish": (
        "(fmax(0.0, fmin(1.0, {0}/6.0 + 0.5)) + ({0} > -3.0 && {0} < 3.0 ? {0}/6.0 : 0.0))",),
    "Mish": (
        f"(tanh({_SOFTPLUS}) + {{0}}*(1.0 - tanh({_SOFTPLUS})*tanh({_SOFTPLUS}))*{_LOGISTIC})",),
    # The spread of an ensemble is 0 where its members agree: its derivative there is taken as 0.
    "Sqrt": ("({0} > 0.0 ? 0.5/sqrt({0}) : 0.0)",),
}

_GELU = {
    # Phi(x) + x phi(x)
    "none": ("(0.5*(1.0 + erf(0.7071067811865476*{0})) "
             "+ {0}*0.3989422804014327*exp(-0.5*{0}*{0}))",),
    # 0.5 (1 + t) + 0.5 x (1 - t^2) c (1 + 3 a x^2), t = tanh(c (x + a x^3))
    "tanh": ("(0.5*(1.0 + tanh(0.7978845608028654*({0} + 0.044715*{0}*{0}*{0}))) + 0.5*{0}*"
             "(1.0 - tanh(0.7978845608028654*({0} + 0.044715*{0}*{0}*{0}))"
             "*tanh(0.7978845608028654*({0} + 0.044715*{0}*{0}*{0})))"
             "*0.7978845608028654*(1.0 + 0.134145*{0}*{0}))",),
}


def gelu_partials(approximate: str) -> tuple[str, ...]:
    return _GELU[approximate]


def mean_partials(n_operands: int) -> tuple[str, ...]:
    return (f"(1.0/{n_operands}.0)",) * n_operands


def clip_partials(bounds: tuple[int, ...]) -> tuple[str, ...]:
    """``Clip`` with bounds at the node inputs ``bounds`` (1: low, 2: high), numbered as its value
    template numbers its operands (an absent bound takes no number)."""
    return {
        (): ("1.0",),
        (1,): ("({0} > {1} ? 1.0 : 0.0)", "({0} <= {1} ? 1.0 : 0.0)"),
        (2,): ("({0} < {1} ? 1.0 : 0.0)", "({0} >= {1} ? 1.0 : 0.0)"),
        (1, 2): ("({0} > {1} && {0} < {2} ? 1.0 : 0.0)", "({0} <= {1} ? 1.0 : 0.0)",
                 "({0} >= {2} ? 1.0 : 0.0)"),
    }[bounds]
