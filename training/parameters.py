"""What ``SurrogateMLP``'s parameters may be: checked at ``fit``, as scikit-learn estimators do,
each failure a :class:`ParameterError` naming the parameter, what it must be and what it got."""

from __future__ import annotations

import math
from numbers import Integral, Real

from training.errors import ParameterError
from training.network import hidden_sizes
from training.optim import SCHEDULES
from training.scaling import SCALINGS

__all__ = ["SOLVERS", "X_SCALINGS", "Y_SCALINGS", "check_parameters"]

SOLVERS: tuple[str, ...] = ("auto", "adam", "lbfgs")
X_SCALINGS: tuple[str, ...] = ("standard", "minmax", "none")
Y_SCALINGS: tuple[str, ...] = ("auto", *SCALINGS)


def check_parameters(est) -> None:
    """Raise a ParameterError for the first invalid parameter of ``est`` (a SurrogateMLP)."""
    _choice("solver", est.solver, SOLVERS)
    _choice("learning_rate", est.learning_rate, SCHEDULES)
    _choice("x_scaling", est.x_scaling, X_SCALINGS)
    _choice("y_scaling", est.y_scaling, Y_SCALINGS)
    hidden_sizes(est.hidden_layer_sizes)
    _number("n_iter_no_change", est.n_iter_no_change, Integral, low=1)
    if est.lbfgs_maxcor != "auto":
        _number("lbfgs_maxcor", est.lbfgs_maxcor, Integral, low=1)
    _number("cv", est.cv, Integral, low=2)
    for name in ("max_iter", "lbfgs_maxiter", "batch_size"):
        if getattr(est, name) != "auto":
            _number(name, getattr(est, name), Integral, low=1)
    for name in ("tol", "lbfgs_ftol", "lbfgs_gtol"):
        _number(name, getattr(est, name), Real, low=0)
    if est.alpha != "auto":
        _number("alpha", est.alpha, Real, low=0)
    _number("learning_rate_init", est.learning_rate_init, Real, low=0, strict=True)
    if est.validation_fraction != "auto":
        _number("validation_fraction", est.validation_fraction, Real, low=0)
        if est.validation_fraction >= 1:
            raise ParameterError(
                f"validation_fraction must be < 1, got {est.validation_fraction}")
    if est.time_budget is not None:
        _number("time_budget", est.time_budget, Real, low=0, strict=True)
    if est.n_jobs is not None and (not isinstance(est.n_jobs, Integral) or est.n_jobs == 0):
        raise ParameterError(f"n_jobs must be None or a non-zero integer, got {est.n_jobs!r}")
    if est.callback is not None and not callable(est.callback):
        raise ParameterError(f"callback must be callable or None, got {est.callback!r}")


def _choice(name: str, value, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ParameterError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def _number(name: str, value, kind, low: float, strict: bool = False) -> None:
    ok = isinstance(value, kind) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < low or (strict and value == low):
        bound = f"> {low}" if strict else f">= {low}"
        raise ParameterError(f"{name} must be a number {bound}, got {value!r}")
