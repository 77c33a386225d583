"""Protocol-free inference: validate a float32 batch against a model and run it.

Both protocols (V2 and the V1 convenience API) decode their request into a float32 array and
call here, so the checks every request needs live in one place.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from service.errors import BadRequest
from service.runtime import OnnxModel


def check_inputs(model: OnnxModel, x: np.ndarray) -> None:
    """Raise BadRequest unless ``x`` is a finite float32 array of shape (rows, input_width)."""
    if x.ndim != 2 or x.shape[1] != model.input_width:
        raise BadRequest(
            f"model {model.name!r} takes {model.input_width} input columns "
            f"({', '.join(model.feature_names)}), got shape {list(x.shape)}"
        )
    if not np.isfinite(x).all():
        row = int(np.argwhere(~np.isfinite(x))[0][0])
        raise BadRequest(f"row {row} has a NaN or infinite input (or one beyond float32 range)")


def infer(
    model: OnnxModel, x: np.ndarray, output_names: Sequence[str] | None = None
) -> list[np.ndarray]:
    """Validate ``x`` and run ``model``; one array per requested output (all by default)."""
    check_inputs(model, x)
    return model.run(x, output_names)


def predict(model: OnnxModel, x: np.ndarray) -> np.ndarray:
    """The model's main output ``outputs`` for ``x``: shape (rows, len(model.target_names))."""
    return infer(model, x, (model.main_output,))[0]
