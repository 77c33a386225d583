"""Protocol-free inference: validate a float32 batch against a model, check it against the
model's domain of validity, and run it.

Both protocols (V2 and the V1 convenience API) decode their request into a float32 array and
call here, so the checks every request needs live in one place.

Domain of validity: every bundle's card records the training range of each input. A row with an
input outside it is an extrapolation; the policy (the ``domain_policy`` setting, overridable per
request) says what to do: ``warn`` predicts and reports the rows, ``reject`` answers 422 naming
the first offending input, ``ignore`` does not check.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from service import metrics
from service.errors import BadRequest, OutOfDomain
from service.runtime import OnnxModel
from service.settings import DOMAIN_POLICIES

# Rows listed in a warning, at most; the count beside the list is always exact.
MAX_LISTED_ROWS = 100


@dataclass(frozen=True, slots=True)
class Prediction:
    """The requested output arrays, and the domain report when some rows were outside it."""

    arrays: list[np.ndarray]
    domain_report: dict[str, Any] | None = None


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


def check_policy(policy: Any) -> str:
    """``policy`` if it names a domain policy, else BadRequest."""
    if policy not in DOMAIN_POLICIES:
        raise BadRequest(
            f"'domain_policy' must be one of {', '.join(DOMAIN_POLICIES)}, got {policy!r:.40}"
        )
    return policy


def check_domain(model: OnnxModel, x: np.ndarray, policy: str) -> dict[str, Any] | None:
    """Apply ``policy`` to the rows of ``x`` outside the training range.

    Returns
    -------
    dict or None
        ``{"out_of_domain_rows": count, "out_of_domain": [{"row", "inputs"}, ...]}`` when some
        rows are outside under ``warn``; None when none are or the policy is ``ignore``.

    Raises
    ------
    OutOfDomain
        Under ``reject``, naming the first offending row, input, value and range.
    """
    if policy == "ignore":
        return None
    outside = model.out_of_domain(x)
    if not outside.any():  # the usual case, one reduction
        return None
    rows = np.flatnonzero(outside.any(axis=1))
    metrics.record_out_of_domain(model, int(rows.size))
    if policy == "reject":
        row = int(rows[0])
        col = int(np.flatnonzero(outside[row])[0])
        low, high = model.domain_low[col], model.domain_high[col]
        raise OutOfDomain(
            f"row {row}: input {model.feature_names[col]!r} = {x[row, col]:.7g} is outside the "
            f"training range [{low:.7g}, {high:.7g}] ({rows.size} of {len(x)} rows are; "
            "domain_policy reject)"
        )
    names = model.feature_names
    listed = [
        {"row": int(row), "inputs": [names[col] for col in np.flatnonzero(outside[row])]}
        for row in rows[:MAX_LISTED_ROWS]
    ]
    return {"out_of_domain_rows": int(rows.size), "out_of_domain": listed}


def infer(
    model: OnnxModel,
    x: np.ndarray,
    output_names: Sequence[str] | None = None,
    domain_policy: str = "warn",
) -> Prediction:
    """Validate ``x``, apply the domain policy and run ``model``.

    Returns one array per requested output (``model.default_outputs`` by default), with the
    domain report.
    """
    check_inputs(model, x)
    report = check_domain(model, x, domain_policy)
    arrays = model.run(x, output_names)
    for name, array in zip(output_names or model.default_outputs, arrays, strict=True):
        check_finite(name, array)
    return Prediction(arrays, report)


def check_finite(name: str, array: np.ndarray) -> None:
    """Raise BadRequest when the model overflowed: an input drove an output beyond float32."""
    if not np.isfinite(array).all():
        row = int(np.argwhere(~np.isfinite(array))[0][0])
        raise BadRequest(
            f"row {row}: output {name!r} is not finite: the inputs drive the model beyond the "
            "float32 range (far outside its training range?)"
        )
