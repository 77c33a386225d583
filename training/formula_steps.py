"""The steps a formula is made of, read from a bundle's graph by :mod:`training.formula` and
written out by :mod:`training.formula_render`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.errors import TrainingError

__all__ = ["Affine", "Elementwise", "FormulaError", "FormulaGraph", "Operand"]

Operand = str | np.ndarray  # a step's variable name, or a constant of size 1 or of the row size


class FormulaError(TrainingError, ValueError):
    """The bundle cannot be exported in the requested form; the message says why in one line."""


@dataclass(frozen=True)
class Affine:
    """``y[i] = sum_j weight[i, j] * source[j] + bias[i]``; numbers keep their ONNX dtype."""

    source: str
    weight: np.ndarray
    bias: np.ndarray

    @property
    def size(self) -> int:
        return len(self.bias)


@dataclass(frozen=True)
class Elementwise:
    """``y[i] = template.format(operand_0[i], operand_1[i], ...)``, constants broadcast;
    ``partials``: the derivative of ``y[i]`` by each operand, in C
    (:mod:`training.formula_tangent`)."""

    template: str
    operands: tuple[Operand, ...]
    size: int
    partials: tuple[str, ...] = ()


@dataclass(frozen=True)
class FormulaGraph:
    """One sample's path through the graph: input ``v0`` of ``n_inputs``, steps ``v1, v2, ...``
    in evaluation order, and the variable holding the outputs."""

    n_inputs: int
    steps: dict[str, Affine | Elementwise]
    output: str

    def size(self, var: str) -> int:
        return self.n_inputs if var == "v0" else self.steps[var].size
