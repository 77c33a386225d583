"""One rule for turning run records (cards, sweep results, evaluation reports) into JSON."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

import numpy as np

__all__ = ["jsonable"]


def jsonable(value):
    """JSON-ready copy: numpy to Python, non-finite floats to null, paths to strings, anything
    else to its repr (a record documents a run: an unserialisable parameter, a callback, must
    not lose the model)."""
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [jsonable(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return repr(value)
