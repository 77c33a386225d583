"""The V1 convenience API codec: ``{"instances": [...]}`` in, ``{"predictions": [...]}`` out.

An instance is either an object ``{"<input name>": number, ...}`` with exactly the model's inputs,
or a list of numbers in the model card's input order. Every rejection names the instance and the
input at fault.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from service.errors import BadRequest
from service.runtime import OnnxModel


def decode_instances(model: OnnxModel, body: Any) -> np.ndarray:
    """The float32 (rows, inputs) array of a V1 predict body."""
    instances = body.get("instances") if isinstance(body, dict) else None
    if not isinstance(instances, list):
        raise BadRequest('request body must be {"instances": [...]}')
    rows = [_row(model, i, row) for i, row in enumerate(instances)]
    # Values beyond float32 become inf here, which the data plane rejects with a clear 400.
    with np.errstate(over="ignore"):
        return np.asarray(rows, dtype=np.float32).reshape(len(rows), model.input_width)


def encode_predictions(model: OnnxModel, outputs: np.ndarray) -> bytes:
    """One ``{"<output name>": value}`` per row; float32 values keep their short repr."""
    names = model.target_names
    # orjson writes float32 in its shortest repr; reading that back gives Python floats that
    # print the same, twice as fast as building the dicts from numpy scalars.
    rows = orjson.loads(orjson.dumps(outputs, option=orjson.OPT_SERIALIZE_NUMPY))
    return orjson.dumps({"predictions": [dict(zip(names, row, strict=True)) for row in rows]})


def _row(model: OnnxModel, i: int, row: Any) -> list[float]:
    if isinstance(row, dict):
        missing = [name for name in model.feature_names if name not in row]
        if missing:
            raise BadRequest(
                f"instance {i}: missing input {missing[0]!r} "
                f"(inputs are {', '.join(model.feature_names)})"
            )
        unknown = [key for key in row if key not in model.feature_index]
        if unknown:
            raise BadRequest(
                f"instance {i}: unknown input {unknown[0]!r} "
                f"(inputs are {', '.join(model.feature_names)})"
            )
        values = [row[name] for name in model.feature_names]
        labels = model.feature_names
    elif isinstance(row, list):
        if len(row) != model.input_width:
            raise BadRequest(
                f"instance {i}: expected {model.input_width} values "
                f"({', '.join(model.feature_names)}), got {len(row)}"
            )
        values, labels = row, model.feature_names
    else:
        raise BadRequest(f"instance {i}: must be an object of inputs or a list of numbers")
    for label, value in zip(labels, values, strict=True):
        if type(value) is not float and type(value) is not int:
            raise BadRequest(f"instance {i}: input {label!r} is not a number: {value!r:.40}")
    return values
