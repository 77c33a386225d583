"""Which inputs matter: Sobol' indices of a surrogate over its training box, and bounds from its
exact derivatives.

- ``S1`` (first order): the share of an output's variance that one input explains alone;
  ``ST`` (total): its share with every interaction it takes part in. Estimated by SALib
  (Saltelli's scheme, ``n (d + 2)`` model evaluations on Sobol' points, Saltelli 2010 and
  Jansen estimators), with SALib's bootstrap confidence half-widths at 95% (``*_conf``).
  ``scipy.stats.sobol_indices`` computes the same indices, but its bootstrap took 10 s at
  ``n = 2^13`` on 3 inputs, SALib's 0.7 s.
- ``DGSM``: derivative-based measures from the model's exact Jacobian, scaled to bound ``ST``
  from above (Sobol' & Kucherenko 2009, for uniform inputs: ``ST_i <= nu_i (b_i - a_i)^2 /
  (pi^2 Var y)`` with ``nu_i = E[(dy/dx_i)^2]``; in the logarithm for log-scaled inputs). A small
  bound proves an input unimportant, whatever the sampling error of ``ST``.

Inputs are independent and uniform over their training range (log-uniform for log-scaled
inputs), the box the model was trained in: outside it the surrogate's answers are not data.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from training.design import Factor, to_physical, unit_design
from training.errors import ParameterError

__all__ = ["DEFAULT_N", "indices"]

# Base samples (a power of two): 2^13 with 8 inputs is 81,920 evaluations, well under a second
# for a surrogate, and bootstrap intervals of about +-0.01 on Ishigami.
DEFAULT_N = 2**13
BOOTSTRAP_RESAMPLES = 200


def indices(factors: Sequence[Factor], outputs: Sequence[str],
            predict: Callable[[np.ndarray], np.ndarray],
            jacobian: Callable[[np.ndarray], np.ndarray] | None = None,
            n: int = DEFAULT_N, seed: int | None = 0) -> dict[str, dict[str, dict[str, float]]]:
    """``{output: {"S1": {input: value}, "ST": ..., "S1_conf": ..., "ST_conf": ...,
    "DGSM": ...}}`` for the model behind ``predict(x) -> (rows, outputs)`` (and
    ``jacobian(x) -> (rows, outputs, inputs)``, for DGSM), ``x`` in physical units."""
    from SALib.analyze import sobol as analyze
    from SALib.sample import sobol as sample

    if n < 16 or n & (n - 1):
        raise ParameterError(f"n must be a power of two of at least 16, got {n}")
    names = [f.name for f in factors]
    # Log-scaled inputs are uniform in their logarithm: sampled there, mapped back to run.
    problem = {"num_vars": len(factors), "names": names,
               "bounds": [[math.log(f.low), math.log(f.high)] if f.log else [f.low, f.high]
                          for f in factors]}
    u = sample.sample(problem, n, calc_second_order=False, scramble=True, seed=seed)
    x = np.column_stack([np.exp(u[:, i]) if f.log else u[:, i] for i, f in enumerate(factors)])
    y = np.asarray(predict(x), dtype=np.float64).reshape(len(x), len(outputs))
    table: dict[str, dict[str, dict[str, float]]] = {}
    for o, output in enumerate(outputs):
        result = analyze.analyze(problem, y[:, o], calc_second_order=False,
                                 num_resamples=BOOTSTRAP_RESAMPLES, seed=seed)
        table[output] = {key: _named(names, result[key])
                         for key in ("S1", "ST", "S1_conf", "ST_conf")}
    if jacobian is not None:
        rng = np.random.default_rng(seed)
        for output, bound in zip(outputs, _dgsm(factors, predict, jacobian, n, rng), strict=True):
            table[output]["DGSM"] = _named(names, bound)
    return table


def _dgsm(factors, predict, jacobian, n, rng) -> np.ndarray:
    """(outputs, inputs): the upper bounds of ST from the mean squared derivatives."""
    unit = unit_design(len(factors), n, "sobol", int(rng.integers(2**31)))
    x = to_physical(factors, unit)
    y, jac = predict(x), jacobian(x)  # (rows, outputs), (rows, outputs, inputs)
    widths = np.array([math.log(f.high / f.low) if f.log else f.high - f.low for f in factors])
    # d y / d log x = x dy/dx for log-uniform inputs.
    scale = np.array([x[:, i] if f.log else np.ones(len(x)) for i, f in enumerate(factors)]).T
    nu = np.mean((jac * scale[:, None, :]) ** 2, axis=0)
    variance = y.var(axis=0)
    variance = np.where(variance > 0, variance, np.inf)
    return nu * widths**2 / (math.pi**2 * variance[:, None])


def _named(names: Sequence[str], values) -> dict[str, float]:
    return {name: round(float(v), 6) for name, v in zip(names, values, strict=True)}
