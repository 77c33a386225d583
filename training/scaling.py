"""Per-column scaling of inputs and outputs, fitted inside the estimator.

Every method is the same affine map ``z = (x - offset_) / scale_``, applied to ``log(x)`` for
``"log"``, so the exporter writes any of them into the ONNX graph as one ``Sub`` and one ``Div``
(plus ``Log``/``Exp``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from training.errors import DataError, ParameterError

__all__ = ["SCALINGS", "Scaler", "auto_output_scaling", "column_names"]

SCALINGS: tuple[str, ...] = ("standard", "minmax", "log", "none")
# Outputs spanning at least this ratio (max / min) in some column are fitted as logarithms, when
# the logarithm is also the more symmetric (see auto_output_scaling); columns spanning less than
# LOG_COLUMN_SPAN are not asked.
LOG_SPAN, LOG_COLUMN_SPAN = 100.0, 10.0


def _safe_scale(scale: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Replace spreads that are zero up to rounding by 1, so constant columns pass through."""
    tiny = 10 * np.finfo(np.float64).eps * np.maximum(np.abs(offset), 1.0)
    return np.where(scale > tiny, scale, 1.0)


def column_names(table) -> list[str] | None:
    """Column names of a DataFrame (or the name of a Series), for error messages."""
    if hasattr(table, "columns"):
        return [str(c) for c in table.columns]
    name = getattr(table, "name", None)
    return None if name is None else [str(name)]


def auto_output_scaling(y: np.ndarray) -> str:
    """``"log"`` for outputs to fit as logarithms, else ``"standard"`` (``y_scaling="auto"``).

    Log when every value is positive, some column spans two decades (max / min >= 100), and
    every column spanning a decade is less skewed as a logarithm than as it is. Such outputs are
    typically products and powers of the inputs (flows, stresses, rates, Arrhenius terms): in
    log space they are sums, much easier to fit, and a fit there keeps its relative error on
    the small values as well as the large. Outputs that span decades only through a long tail
    the logarithm turns the other way keep the standard scaling.
    """
    y = np.asarray(y, dtype=np.float64)
    if len(y) < 3 or not np.all(y > 0) or not np.all(np.isfinite(y)):
        return "standard"
    span = y.max(axis=0) / y.min(axis=0)
    if span.max() < LOG_SPAN:
        return "standard"
    wide = span >= LOG_COLUMN_SPAN
    linear, logged = _skewness(y[:, wide]), _skewness(np.log(y[:, wide]))
    return "log" if np.all(np.abs(logged) < np.abs(linear)) else "standard"


def _skewness(x: np.ndarray) -> np.ndarray:
    """Sample skewness per column (the third standardized moment)."""
    centred = x - x.mean(axis=0)
    std = centred.std(axis=0)
    return np.mean(centred**3, axis=0) / np.where(std > 0, std, 1.0) ** 3


def _column_name(names: Sequence[str] | None, index: int) -> str:
    if names is not None and index < len(names) and names[index] is not None:
        return f"{names[index]!r} (column {index})"
    return f"column {index}"


class Scaler:
    """Affine per-column scaling, optionally after a logarithm.

    Parameters
    ----------
    method : {"standard", "minmax", "log", "none"}, default="standard"
        ``"standard"``: zero mean, unit variance. ``"minmax"``: the training range onto
        [-1, 1]. ``"log"``: standardise ``log(x)``, for positive quantities spanning decades.
        ``"none"``: identity.

    Attributes
    ----------
    offset_ : ndarray of shape (n_columns,)
        Subtracted from ``x`` (from ``log(x)`` for ``"log"``).
    scale_ : ndarray of shape (n_columns,)
        Divides the shifted values; never 0 (a constant column gets 1.0).
    """

    def __init__(self, method: str = "standard") -> None:
        if method not in SCALINGS:
            raise ParameterError(
                f"unknown scaling {method!r}; valid methods: {', '.join(SCALINGS)}")
        self.method = method

    def fit(self, x: np.ndarray, names: Sequence[str] | None = None) -> Scaler:
        """Fit offset and scale per column of ``x``.

        Parameters
        ----------
        x : ndarray of shape (n_samples, n_columns)
            Values in physical units.
        names : sequence of str, optional
            Column names, used in error messages.

        Returns
        -------
        self : Scaler

        Raises
        ------
        ValueError
            For ``"log"`` when a column holds a value that is not strictly positive.
        """
        x = np.asarray(x, dtype=np.float64)
        if self.method == "log":
            x = self._log(x, names)
        if self.method in ("standard", "log"):
            offset, scale = x.mean(axis=0), x.std(axis=0)
        elif self.method == "minmax":
            low, high = x.min(axis=0), x.max(axis=0)
            offset, scale = (high + low) / 2.0, (high - low) / 2.0
        else:
            offset, scale = np.zeros(x.shape[1]), np.ones(x.shape[1])
        self.offset_ = offset
        self.scale_ = _safe_scale(scale, offset)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Physical units to scaled space."""
        x = np.asarray(x, dtype=np.float64)
        if self.method == "log":
            x = self._log(x, None)
        return (x - self.offset_) / self.scale_

    def inverse(self, z: np.ndarray) -> np.ndarray:
        """Scaled space back to physical units."""
        x = np.asarray(z, dtype=np.float64) * self.scale_ + self.offset_
        if self.method == "log":
            # Predictions far outside the training range may overflow to inf; that is the answer.
            with np.errstate(over="ignore"):
                return np.exp(x)
        return x

    def to_dict(self) -> dict:
        """JSON-able description: ``{"method", "offset", "scale"}``."""
        return {
            "method": self.method,
            "offset": self.offset_.tolist(),
            "scale": self.scale_.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> Scaler:
        """Rebuild a fitted scaler from :meth:`to_dict` output."""
        scaler = cls(data["method"])
        scaler.offset_ = np.asarray(data["offset"], dtype=np.float64)
        scaler.scale_ = np.asarray(data["scale"], dtype=np.float64)
        return scaler

    def __repr__(self) -> str:
        return f"Scaler(method={self.method!r})"

    @staticmethod
    def _log(x: np.ndarray, names: Sequence[str] | None) -> np.ndarray:
        bad = ~(x > 0)
        if bad.any():
            column = int(np.flatnonzero(bad.any(axis=0))[0])
            value = x[bad[:, column], column][0]
            raise DataError(
                f"log scaling needs strictly positive values, but {_column_name(names, column)} "
                f"holds {value!r}"
            )
        return np.log(x)
