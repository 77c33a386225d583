"""Where the next simulations should go: the rows of the domain where an ensemble is least sure.

Candidates are a scrambled Sobol' pool inside the model's training range (in the logarithm for
log-scaled inputs). Each gets a score, the members' spread (``std``) of every output over that
output's spread across the pool (so outputs in different units count alike), the largest over
the outputs. The batch is chosen greedily: the best score, then the best score once every
candidate is damped by its nearness to the rows already chosen or already simulated
(``1 - exp(-(d / r)^2)`` in the unit cube, ``r`` the spacing that ``len(batch) + len(done)``
rows spread evenly would have), so a batch does not pile up in one uncertain corner.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from training.design import Factor, to_physical, to_unit_cube, unit_design

__all__ = ["Suggestion", "suggest"]

# Candidates per suggested row (at least MIN_POOL): the scores are as good as the pool is dense.
POOL_PER_ROW, MIN_POOL = 256, 4096


@dataclass(frozen=True)
class Suggestion:
    """The chosen rows (physical units), their predicted outputs and spreads, and scores."""

    x: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    score: np.ndarray


def suggest(factors: Sequence[Factor], predict: Callable[[np.ndarray], tuple], k: int,
            done: np.ndarray | None = None, seed: int | None = None) -> Suggestion:
    """``k`` rows to simulate next; ``predict(x) -> (mean, std)`` for an (n, inputs) array."""
    pool_size = 2 ** math.ceil(math.log2(max(MIN_POOL, POOL_PER_ROW * k)))
    unit = unit_design(len(factors), pool_size, "sobol", seed)
    x = to_physical(factors, unit)
    mean, std = predict(x)
    spread = mean.std(axis=0)
    spread = np.where(spread > 0, spread, 1.0)
    score = np.max(std / spread, axis=1)
    done_unit = to_unit_cube(factors, np.empty((0, len(factors))) if done is None else done)
    radius = math.sqrt(len(factors)) * (k + len(done_unit)) ** (-1.0 / len(factors)) / 2
    damping = np.ones(len(unit))
    for row in done_unit:
        damping = np.minimum(damping, _nearness(unit, row, radius))
    chosen = []
    for _ in range(k):
        best = int(np.argmax(score * damping))
        chosen.append(best)
        damping = np.minimum(damping, _nearness(unit, unit[best], radius))
    return Suggestion(x[chosen], mean[chosen], std[chosen], score[chosen])


def _nearness(unit: np.ndarray, row: np.ndarray, radius: float) -> np.ndarray:
    """0 at ``row``, rising to 1 a few ``radius`` away."""
    return 1.0 - np.exp(-np.sum((unit - row) ** 2, axis=1) / radius**2)
