"""The V1 codec (KServe's V1 and TF Serving's REST body): rows or columns in, the same out.

A body holds its inputs in one of four layouts, and the answer comes in the same one:

- ``{"instances": [{"<input>": number, ...}, ...]}``, objects with exactly the model's inputs,
  answered ``{"predictions": [{"<output>": value, ...}, ...]}``;
- ``{"instances": [[number, ...], ...]}``, lists in the model card's input order, answered
  ``{"predictions": [[value, ...], ...]}`` in its output order (as TF Serving answers a model
  with one output tensor); a body mixing objects and lists is answered with objects;
- ``{"inputs": {"<input>": [number, ...], ...}}``, one list per input (TF Serving's columnar
  form), answered ``{"outputs": {"<output>": [value, ...], ...}}``;
- ``{"inputs": [[number, ...], ...]}``, the input tensor's rows, answered
  ``{"outputs": [[value, ...], ...]}``.

Every rejection names the instance (or input) at fault. Optional ``"parameters"``:
``return_std`` and ``return_jacobian`` (booleans) add ``"std"`` (laid out as the predictions)
and ``"jacobian"`` (per row ``{"<output>": {"<input>": value}}`` or ``[[d out / d in, ...],
...]``; by columns ``{"<output>": {"<input>": [value, ...]}}``) beside the predictions;
``domain_policy`` overrides the service's setting for this request.
"""

from __future__ import annotations

import functools
import operator
from itertools import chain
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import orjson

from service import bundle_format as fmt
from service.codec import (
    JSON_TYPE,
    NUMBER_TYPES,
    QUICK_VALUES,
    checked_rows,
    hides_booleans,
    loads,
    plain_float32,
    plain_numbers,
)
from service.errors import BadRequest

if TYPE_CHECKING:
    from service.runtime import OnnxModel

MAIN_OUTPUT = fmt.OUTPUT_TENSOR

# The V1 parameters and the graph output each ``return_*`` flag asks for.
_RETURNS = {"return_std": "std", "return_jacobian": "jacobian"}
_PARAMETERS = frozenset({*_RETURNS, "domain_policy"})


# The body layouts (see the module docstring).
NAMED_ROWS, ROWS, NAMED_COLUMNS, TENSOR = "named_rows", "rows", "named_columns", "tensor"


class PredictRequest(NamedTuple):  # as codec.InferRequest
    """A decoded V1 predict body: the inputs, the graph outputs to run, the policy override and
    the layout the answer takes; ``inside`` as in ``codec.InferRequest`` (long columns)."""

    inputs: np.ndarray
    outputs: tuple[str, ...]
    domain_policy: Any  # as sent (the data plane checks it), None when not
    layout: str = NAMED_ROWS
    inside: bool | None = None

    @property
    def output_names(self) -> tuple[str, ...]:
        return self.outputs


class V1Codec:
    """The V1 predict API for the data plane (``service.dataplane.Codec``)."""

    protocol = "v1"

    def decode(self, model: OnnxModel, body: bytes, header_length: str | None) -> PredictRequest:
        body = loads(body)
        return plain_body(model, body) or decode_request(model, body)

    def encode(self, model: OnnxModel, request: PredictRequest, arrays: list[np.ndarray],
               report: dict[str, Any] | None) -> tuple[bytes, str, dict[str, str] | None]:
        return encode_predictions(model, request, arrays, report), JSON_TYPE, None


V1 = V1Codec()


_BODY_SHAPE = 'request body must be {"instances": [...]} or {"inputs": {...} or [...]}'


_INSTANCES_ONLY = frozenset({"instances"})


def plain_body(model: OnnxModel, body: Any) -> PredictRequest | None:
    """The usual small body, decoded in few steps; None for any other.

    The usual body: ``{"instances": [...]}`` and nothing else, a few instances (at most
    ``QUICK_VALUES`` values in all), every one an object with exactly the model's inputs, or
    every one a list of its width, of plain numbers inside float32's range. Anything else is
    None, and :func:`decode_request` checks it in full and names what is wrong. What this
    returns is what ``decode_request`` would. Measured in process (one named instance, paired
    with the full decode): the whole request 101 -> 90 us of the service's own work.
    """
    if type(body) is not dict or body.keys() != _INSTANCES_ONLY:
        return None
    instances = body["instances"]
    names, getter, width = _names_and_getter(model.feature_names)
    if type(instances) is not list or not 0 < len(instances) * width <= QUICK_VALUES:
        return None
    if type(instances[0]) is dict:
        if not all(type(row) is dict and row.keys() == names for row in instances):
            return None
        rows, layout = map(getter, instances), NAMED_ROWS
    elif all(type(row) is list and len(row) == width for row in instances):
        rows, layout = instances, ROWS
    else:
        return None
    x = plain_float32(list(chain.from_iterable(rows)))
    if x is None:
        return None
    return PredictRequest(x.reshape(len(instances), width), (MAIN_OUTPUT,), None, layout)


def decode_request(model: OnnxModel, body: Any) -> PredictRequest:
    """Validate a V1 predict body against ``model``."""
    if not isinstance(body, dict) or ("instances" in body) == ("inputs" in body):
        raise BadRequest(_BODY_SHAPE)
    parameters = body.get("parameters")
    if parameters is None or parameters == {}:  # the usual body
        outputs, policy = (MAIN_OUTPUT,), None
    else:
        outputs, policy = _parameters(model, parameters)
    if "instances" in body:
        instances = body["instances"]
        if not isinstance(instances, list):
            raise BadRequest("'instances' must be a list of instances")
        layout = ROWS if all(type(row) is list for row in instances) else NAMED_ROWS
        return PredictRequest(_instances(model, instances), outputs, policy, layout)
    columns = body["inputs"]
    if isinstance(columns, list):
        return PredictRequest(_instances(model, columns), outputs, policy, TENSOR)
    if isinstance(columns, dict):
        x, inside = _columns(model, columns)
        return PredictRequest(x, outputs, policy, NAMED_COLUMNS, inside)
    raise BadRequest("'inputs' must be an object of input columns or a list of rows")


def _parameters(model: OnnxModel, parameters: Any) -> tuple[tuple[str, ...], Any]:
    """The graph outputs a body's ``parameters`` ask for, and its domain policy override."""
    if not isinstance(parameters, dict):
        raise BadRequest("'parameters' must be a JSON object")
    unknown = sorted(set(parameters) - _PARAMETERS)
    if unknown:
        raise BadRequest(
            f"unknown parameter {unknown[0]!r:.80}; known: {', '.join(sorted(_PARAMETERS))}"
        )
    outputs = [MAIN_OUTPUT]
    for flag, output in _RETURNS.items():
        value = parameters.get(flag, False)
        if not isinstance(value, bool):
            raise BadRequest(f"parameter {flag!r} must be true or false")
        if value and output not in model.output_types:
            raise BadRequest(
                f"model {model.name!r} has no {output!r} output (it has "
                f"{', '.join(model.output_names)})"
                + ("; train it with --ensemble K for a spread" if output == "std" else "")
            )
        if value:
            outputs.append(output)
    return tuple(outputs), parameters.get("domain_policy")


def _float32(rows: Any, shape: tuple[int, int]) -> np.ndarray:
    # Values beyond float32 become inf here, which the data plane rejects with a clear 400.
    with np.errstate(over="ignore"):
        return np.asarray(rows, dtype=np.float32).reshape(shape)


def _instances(model: OnnxModel, instances: list[Any]) -> np.ndarray:
    """The float32 (rows, inputs) array of the instances.

    The usual body (objects with exactly the model's inputs, or lists of the right length, of
    numbers only) is checked in bulk, about twice as fast; any other goes through ``_row`` one
    instance at a time, for the error naming the instance at fault.
    """
    rows = _plain_rows(model, instances)
    if rows is None:
        rows = [_row(model, i, row) for i, row in enumerate(instances)]
    return _float32(rows, (len(instances), model.input_width))


def _columns(model: OnnxModel, columns: dict[str, Any]) -> tuple[np.ndarray, bool | None]:
    """The float32 (rows, inputs) array of ``{"<input>": [number, ...], ...}``, and whether it
    is plainly inside the model's range when that was looked at (long columns, as V2's long
    data: ``codec.checked_rows``), else None."""
    features = model.feature_names
    missing = [name for name in features if name not in columns]
    unknown = [key for key in columns if key not in model.feature_index]
    if missing or unknown:
        what = f"missing input {missing[0]!r}" if missing else f"unknown input {unknown[0]!r:.80}"
        raise BadRequest(f"'inputs': {what} (inputs are {', '.join(features)})")
    values = [columns[name] for name in features]
    for name, column in zip(features, values, strict=True):
        if type(column) is not list:
            raise BadRequest(f"'inputs': input {name!r} must be a list of numbers")
        if len(column) != len(values[0]):
            raise BadRequest(
                f"'inputs': input {name!r} has {len(column)} values, input "
                f"{features[0]!r} {len(values[0])}"
            )
    if len(features) * len(values[0]) > QUICK_VALUES:
        flat = list(chain.from_iterable(values))
        numbers = plain_numbers(flat)
        quick = None if numbers is None else checked_rows(
            model, numbers.reshape(len(features), -1).T, flat)
        if quick is not None:
            return quick
    array = _numbers(values)
    if array is None:
        for name, column in zip(features, values, strict=True):
            for i, value in enumerate(column):
                if type(value) not in NUMBER_TYPES:
                    raise BadRequest(f"'inputs': input {name!r} value {i} is not a number: "
                                     f"{value!r:.40}")  # fmt: skip
        array = values  # numbers numpy keeps as objects (integers beyond 64 bits)
    return np.ascontiguousarray(_float32(array, (len(features), len(values[0]))).T), None


def _numbers(values: list) -> np.ndarray | None:
    """``values`` (lists of equal length) as a 2-D numeric array in one numpy pass, or None
    when anything in them is not a JSON number (true/false included) or is nested deeper."""
    try:
        array = np.asarray(values)
    except (ValueError, TypeError):
        return None
    if array.ndim != 2 or (array.size and (
            array.dtype.kind not in "iuf" or hides_booleans(array, values))):
        return None
    return array


def encode_predictions(
    model: OnnxModel,
    request: PredictRequest,
    arrays: list[np.ndarray],
    domain_report: dict[str, Any] | None = None,
) -> bytes:
    """The predictions, plus ``std``/``jacobian`` when asked and ``out_of_domain`` when some
    rows were, in the request's layout; float32 values keep their short repr."""
    names, features = model.target_names, model.feature_names
    layout = request.layout
    response: dict[str, Any] = {}
    for output, array in zip(request.outputs, arrays, strict=True):
        key = output
        if output == MAIN_OUTPUT:
            key = "predictions" if layout in (NAMED_ROWS, ROWS) else "outputs"
        if layout == NAMED_COLUMNS:
            # Columns first: (outputs[, inputs], rows), each innermost list one column.
            array = np.ascontiguousarray(np.moveaxis(array, 0, -1))
        if layout == NAMED_ROWS:
            # orjson writes float32 in its shortest repr; reading that back gives Python floats
            # that print the same, twice as fast as building the dicts from numpy scalars.
            values = orjson.loads(orjson.dumps(array, option=orjson.OPT_SERIALIZE_NUMPY))
        else:  # lists of rows or columns: the (C-contiguous) arrays are written as they are
            values = np.ascontiguousarray(array)
        if layout in (ROWS, TENSOR):
            response[key] = values
        elif layout == NAMED_COLUMNS:
            response[key] = (
                {name: dict(zip(features, grads, strict=True))
                 for name, grads in zip(names, values, strict=True)} if output == "jacobian"
                else dict(zip(names, values, strict=True))
            )  # fmt: skip
        elif output == "jacobian":
            response[key] = [
                {name: dict(zip(features, grad, strict=True))
                 for name, grad in zip(names, row, strict=True)}
                for row in values
            ]
        else:
            # No strict zip per row: the graph's output width is checked at load, and a
            # strict zip costs about 2.5 times a plain one here (1.0 vs 0.4 ms per 1000 rows).
            response[key] = [dict(zip(names, row, strict=False)) for row in values]
    if domain_report:
        response.update(domain_report)
    return orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)


def _plain_rows(model: OnnxModel, instances: list[Any]) -> np.ndarray | None:
    """The rows' values when every instance is plain (see ``_instances``), else None."""
    names, getter, width = _names_and_getter(model.feature_names)
    rows = [
        getter(row) if type(row) is dict and row.keys() == names
        else row if type(row) is list and len(row) == width
        else None
        for row in instances
    ]
    if any(row is None for row in rows):
        return None
    return _numbers(rows) if rows else np.empty((0, width))


@functools.lru_cache(maxsize=256)
def _names_and_getter(names: tuple[str, ...]):
    getter = operator.itemgetter(*names) if len(names) > 1 else (lambda row: (row[names[0]],))
    return frozenset(names), getter, len(names)


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
