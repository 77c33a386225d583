"""V2 inference protocol codec: request decoding and response encoding, JSON and binary.

JSON tensors carry ``data`` flat or nested (row-major); Triton's binary tensor data extension
puts a JSON header of ``Inference-Header-Content-Length`` bytes first and the raw little-endian
tensors after it, in input order, each input saying its size in ``parameters.binary_data_size``.
Outputs are returned binary when the request asks (``parameters.binary_data_output`` for all,
``parameters.binary_data`` per output). Every input datatype below is accepted and cast to the
model's float32; an untrusted shape is checked against the data actually sent before it is used.
"""

from __future__ import annotations

import math
from array import array as FloatArray
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import orjson

from service.errors import BadRequest

if TYPE_CHECKING:
    from service.runtime import OnnxModel

# Little-endian, as the binary extension prescribes.
DATATYPES = {
    "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"),
    "INT8": np.dtype("i1"), "INT16": np.dtype("<i2"), "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"), "UINT8": np.dtype("u1"), "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"), "UINT64": np.dtype("<u8"),
}
HEADER_LENGTH = "Inference-Header-Content-Length"
JSON_TYPE = "application/json"
BINARY_TYPE = "application/octet-stream"


PLATFORM = "onnxruntime_onnx"


def model_metadata(model: OnnxModel) -> dict[str, Any]:
    """The V2 model metadata of ``model``, minus ``versions`` (the registry's to say)."""
    return {
        "name": model.name,
        "platform": PLATFORM,
        "inputs": [{"name": model.input_name, "datatype": "FP32",
                    "shape": [-1, model.input_width]}],
        "outputs": [
            {"name": name, "datatype": model.output_datatypes[name],
             "shape": model.output_shapes[name]}
            for name in model.output_names
        ],
        "parameters": {
            "inputs": list(model.feature_names),
            "outputs": list(model.target_names),
            "domain": {
                name: [_finite_or_none(low), _finite_or_none(high)]
                for name, low, high in zip(model.feature_names, model.domain_low,
                                           model.domain_high, strict=True)
            },
        },
    }


def _finite_or_none(value: np.float32) -> float | None:
    return float(value) if np.isfinite(value) else None


class InferRequest(NamedTuple):  # a NamedTuple: built per request, 1 us less than a dataclass
    """A decoded V2 inference request; ``outputs`` pairs each output name with "binary?".

    ``domain_policy`` is the request's override of the setting (``parameters.domain_policy``,
    as sent: the data plane checks it), or None. ``inside`` is what ``model.plainly_inside``
    said of ``inputs`` when the decode needed to know (long JSON data), else None.
    """

    id: str | None
    inputs: np.ndarray
    outputs: tuple[tuple[str, bool], ...]
    domain_policy: Any = None
    inside: bool | None = None

    @property
    def output_names(self) -> list[str]:
        return [name for name, _ in self.outputs]


class V2Codec:
    """The V2 protocol for the data plane (``service.dataplane.Codec``)."""

    protocol = "v2"

    def decode(self, model: OnnxModel, body: bytes, header_length: str | None) -> InferRequest:
        if header_length is None:
            header = loads(body)
            return plain_request(model, header) or decode_request(model, header, None)
        return decode_request(model, *split_body(body, header_length))

    def encode(self, model: OnnxModel, request: InferRequest, arrays: list[np.ndarray],
               report: dict[str, Any] | None) -> tuple[bytes, str, dict[str, str] | None]:
        payload, headers, content_type = encode_response(model, request, arrays, report)
        return payload, content_type, headers


V2 = V2Codec()


def loads(data: bytes | memoryview) -> Any:
    """Parse JSON, turning every parse failure (bad UTF-8, NaN, depth > 1024) into a 400."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None


def split_body(body: bytes, header_length: str | None) -> tuple[Any, memoryview | None]:
    """The JSON header and, for a binary request, a view of the binary section after it."""
    if header_length is None:
        return loads(body), None
    try:
        length = int(header_length)
    except ValueError:
        length = -1
    if not 0 < length <= len(body):
        raise BadRequest(
            f"{HEADER_LENGTH} {header_length!r} must be an integer between 1 and the body "
            f"length {len(body)}"
        )
    view = memoryview(body)
    return loads(view[:length]), view[length:]


# The keys of the usual request: its inputs, optionally an id and the outputs asked for.
_PLAIN_KEYS = frozenset({"id", "inputs", "outputs"})
_PLAIN_TENSOR = frozenset({"name", "datatype", "shape", "data"})
# type(), not isinstance: a JSON true/false is a bool, which isinstance(..., int) lets through.
NUMBER_TYPES = frozenset({float, int})
_FLOAT32_MAX = float(np.finfo(np.float32).max)
# Integers up to this size are doubles exactly, so casting them to float32 rounds once either way.
_EXACT = 2.0**53


def plain_request(model: OnnxModel, header: Any) -> InferRequest | None:
    """The usual small JSON request, decoded in few steps; None for any other.

    The usual request: an optional string ``id``, one FP32 tensor named as the model's input,
    with ``shape`` [rows >= 1, the model's width] and a flat ``data`` of at most
    :data:`QUICK_VALUES` plain numbers, and optionally the outputs asked for (as tritonclient
    and the bench name them); no request parameters. Anything else is None, and
    :func:`decode_request` checks it in full and names what is wrong. What this returns is what
    ``decode_request`` would. Measured in process (a single-row request, paired with the full
    decode): the whole request 0.82x, 104-110 -> 87-90 us of the service's own work; with
    ``"outputs": [{"name": "outputs"}]``, which used to take the full decode, 21.4 -> 19.3 us.
    """
    if type(header) is not dict or not _PLAIN_KEYS.issuperset(header):
        return None
    if "inputs" not in header or ("id" in header and type(header["id"]) is not str):
        return None
    inputs = header["inputs"]
    if type(inputs) is not list or len(inputs) != 1:
        return None
    tensor = inputs[0]
    if (type(tensor) is not dict or tensor.keys() != _PLAIN_TENSOR
            or tensor["name"] != model.input_name or tensor["datatype"] != "FP32"):
        return None
    shape, data = tensor["shape"], tensor["data"]
    if (type(shape) is not list or len(shape) != 2 or type(shape[0]) is not int
            or type(shape[1]) is not int or shape[1] != model.input_width or shape[0] < 1):
        return None
    if type(data) is not list or len(data) != shape[0] * shape[1] or len(data) > QUICK_VALUES:
        return None
    x = plain_float32(data)
    if x is None:
        return None
    try:
        outputs = _requested_outputs(model, header.get("outputs"), False)
    except BadRequest:
        return None
    return InferRequest(header.get("id"), x.reshape(shape), outputs)


def plain_float32(values: list) -> np.ndarray | None:
    """A few ``values`` as a float32 array when every one is a plain JSON number (not true or
    false) inside float32's range (so the cast cannot overflow); None otherwise."""
    if not NUMBER_TYPES.issuperset(map(type, values)):
        return None
    low, high = min(values), max(values)
    if not -_FLOAT32_MAX <= low <= high <= _FLOAT32_MAX:
        return None
    if -_EXACT <= low and high <= _EXACT:  # every value, int or float, is a double exactly
        return np.fromiter(values, np.float32, len(values))
    # Larger integers as numpy reads them (int64 cast once, beyond 64 bits refused), as the
    # full decode does.
    array = np.asarray(values)
    if array.dtype.kind not in "iuf":  # integers beyond 64 bits
        return None
    return array.astype(np.float32)


def decode_request(model: OnnxModel, header: Any, binary: memoryview | None) -> InferRequest:
    """Validate a V2 request against ``model`` and build its float32 input array."""
    if not isinstance(header, dict):
        raise BadRequest("request body must be a JSON object")
    request_id = header.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadRequest("'id' must be a string")
    parameters = _object(header.get("parameters"), "request 'parameters'")
    binary_default = _flag(parameters, "binary_data_output")
    tensor = _single_input(model, header.get("inputs"))
    x, inside = _tensor_array(model, tensor, binary)
    outputs = _requested_outputs(model, header.get("outputs"), binary_default)
    return InferRequest(request_id, x, outputs, parameters.get("domain_policy"), inside)


def encode_response(
    model: OnnxModel,
    request: InferRequest,
    arrays: list[np.ndarray],
    parameters: dict[str, Any] | None = None,
) -> tuple[bytes, dict[str, str] | None, str]:
    """The response body, its extra headers (binary only) and its content type.

    ``parameters`` (e.g. the domain report) become the response's ``parameters``.
    """
    outputs, chunks = [], []
    for (name, binary), array in zip(request.outputs, arrays, strict=True):
        entry: dict[str, Any] = {
            "name": name,
            "datatype": model.output_datatypes[name],
            "shape": list(array.shape),
        }
        if binary:
            raw = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = np.ascontiguousarray(array).ravel()
        outputs.append(entry)
    response: dict[str, Any] = {
        "model_name": model.name,
        "model_version": model.version_label,
        "outputs": outputs,
    }
    if request.id is not None:
        response["id"] = request.id
    if parameters:
        response["parameters"] = parameters
    header = orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return header, None, JSON_TYPE
    return b"".join([header, *chunks]), {HEADER_LENGTH: str(len(header))}, BINARY_TYPE


def _single_input(model: OnnxModel, inputs: Any) -> dict[str, Any]:
    if type(inputs) is list and len(inputs) == 1:  # the usual request: one tensor, named right
        tensor = inputs[0]
        if type(tensor) is dict and tensor.get("name") == model.input_name:
            return tensor
    if not isinstance(inputs, list) or not inputs:
        raise BadRequest("'inputs' must be a non-empty list of tensors")
    if not all(isinstance(t, dict) and isinstance(t.get("name"), str) for t in inputs):
        raise BadRequest("each input must be an object with a string 'name'")
    names = [t["name"] for t in inputs]
    expected = f"model {model.name!r} takes one input {model.input_name!r}"
    unknown = [n for n in names if n != model.input_name]
    if unknown:
        raise BadRequest(f"unknown input {unknown[0]!r}: {expected}")
    if len(names) > 1:
        raise BadRequest(f"input {model.input_name!r} given {len(names)} times: {expected}")
    return inputs[0]


def _tensor_array(model: OnnxModel, tensor: dict[str, Any],
                  binary: memoryview | None) -> tuple[np.ndarray, bool | None]:
    """The float32 rows of ``tensor``, and whether they are plainly inside the model's range
    when that was looked at (None when not)."""
    name = tensor["name"]
    datatype = tensor.get("datatype")
    dtype = DATATYPES.get(datatype) if isinstance(datatype, str) else None
    if dtype is None:
        raise BadRequest(
            f"input {name!r}: datatype {datatype!r} is not one of "
            f"{', '.join(DATATYPES)}"
        )
    shape = _shape(name, tensor.get("shape"), model.input_width)
    size = _object(tensor.get("parameters"), f"input {name!r} 'parameters'").get(
        "binary_data_size"
    )
    if size is not None:
        array = _binary_array(name, dtype, shape, size, tensor, binary)
    else:
        if binary:
            raise BadRequest(
                f"{len(binary)} bytes of binary data but no input has binary_data_size"
            )
        quick = None
        if dtype.kind == "f" and dtype.itemsize >= 4:  # FP16 data must also fit FP16's range
            quick = plain_rows(model, tensor.get("data"), shape)
        if quick is not None:
            return quick
        array = _json_array(name, tensor, dtype)
    if array.size != math.prod(shape):
        raise BadRequest(
            f"input {name!r}: shape {shape} needs {math.prod(shape)} values, got {array.size}"
        )
    return _float32(array.reshape(shape)), None


def _float32(array: np.ndarray) -> np.ndarray:
    """``array`` as C-ordered float32 (what the session takes). Values beyond float32 become
    inf here, which the data plane rejects with a clear 400."""
    with np.errstate(over="ignore"):
        return array.astype(np.float32, order="C", copy=False)


def _shape(name: str, shape: Any, width: int) -> list[int]:
    # Rank 2 only, as Triton requires for a [-1, n] input: a bare row [n] is not guessed at.
    if (
        type(shape) is not list or len(shape) != 2
        or type(shape[0]) is not int or type(shape[1]) is not int
        or shape[0] < 0 or shape[1] < 0
    ):
        raise BadRequest(
            f"input {name!r}: shape must be [rows, {width}] (two non-negative integers), "
            f"got {shape!r}"
        )
    return shape


def _binary_array(name, dtype, shape, size, tensor, binary) -> np.ndarray:
    if "data" in tensor:
        raise BadRequest(f"input {name!r} has both 'data' and binary_data_size")
    if binary is None:
        raise BadRequest(f"input {name!r} has binary_data_size but the request has no "
                         f"{HEADER_LENGTH} header")
    expected = math.prod(shape) * dtype.itemsize
    if type(size) is not int or size != expected or size != len(binary):
        raise BadRequest(
            f"input {name!r}: binary_data_size {size!r}, shape {shape} of "
            f"{tensor['datatype']} needs {expected} bytes, {len(binary)} bytes were sent"
        )
    return np.frombuffer(binary, dtype=dtype)


def _json_array(name: str, tensor: dict[str, Any], dtype: np.dtype) -> np.ndarray:
    data = tensor.get("data")
    if not isinstance(data, list):
        raise BadRequest(f"input {name!r}: 'data' must be a (flat or nested) list of numbers")
    try:
        array = np.asarray(data)
    except (ValueError, TypeError):
        raise BadRequest(f"input {name!r}: nested 'data' is not rectangular") from None
    if array.size and (array.dtype.kind not in "iuf" or hides_booleans(array, data)):
        raise BadRequest(f"input {name!r}: 'data' must hold numbers only")
    if array.dtype.kind == "f" and dtype.kind in "iu":
        raise BadRequest(
            f"input {name!r}: {tensor['datatype']} data must be integers within 64 bits"
        )
    if array.size and dtype != DATATYPES["FP32"] and dtype != DATATYPES["FP64"]:
        info = np.iinfo(dtype) if dtype.kind in "iu" else np.finfo(dtype)
        if array.min() < info.min or array.max() > info.max:
            raise BadRequest(
                f"input {name!r}: {tensor['datatype']} data must lie in "
                f"[{info.min}, {info.max}]"
            )
    return array


# Up to this many values, scanning the Python values is cheaper than the vectorised pre-check.
_SCAN_SIZE = 64
# The most values the quick decodes of the usual small request take (plain_request here,
# codec_v1.plain_body); longer V2 data is converted by plain_rows.
QUICK_VALUES = _SCAN_SIZE


def plain_rows(model: OnnxModel, values: Any, shape: list[int]) -> tuple[np.ndarray, bool] | None:
    """A flat list of more than :data:`_SCAN_SIZE` JSON numbers, ``shape[0]`` rows of the
    model's width, as float32 rows, with whether they are plainly inside the model's range;
    None for anything else (the general path then names what is wrong, or converts what it
    may: nested lists, integers of 2**63 or more). See :func:`checked_rows`."""
    if (type(values) is not list or len(values) <= _SCAN_SIZE or shape[1] != model.input_width
            or len(values) != shape[0] * shape[1]):
        return None
    array = plain_numbers(values)
    return None if array is None else checked_rows(model, array.reshape(shape), values)


def plain_numbers(values: list) -> np.ndarray | None:
    """``values`` as a float32 array when every one is a number, true/false included (read as 1
    and 0) and integers as large as float64 takes (beyond float32 they become inf, as in
    :func:`_float32`); else None.

    ``np.asarray`` finds the type of every value before it converts them; here
    ``array.array("f", ...)`` converts them in one C loop that refuses anything but numbers
    (strings, null, lists, objects; an integer beyond float64), rounding each double to float32
    as numpy's cast does (the same bits), and numpy takes its buffer without a copy: no numpy
    pass over the values, which under gunicorn's threads costs several times its own time (see
    :func:`checked_rows`). Measured, 8000 values: 119 us, as ``array("d")`` and numpy's cast
    together took (120; ``np.asarray(values, np.float32)``, which checks nothing, 126); earlier,
    on a faster machine, ``array("d")`` 82 us where ``sum`` (to check the types) and
    ``np.fromiter`` took 95.
    """
    try:
        return np.frombuffer(FloatArray("f", values), np.float32)
    except (TypeError, OverflowError):
        return None


def checked_rows(model: OnnxModel, rows: np.ndarray,
                 values: list) -> tuple[np.ndarray, bool] | None:
    """The float32 rows (C order) of ``rows``, a (rows, width) view of what
    :func:`plain_numbers` made of the flat list ``values``, with whether they are plainly inside
    the model's range (``model.plainly_inside``); None when true/false or an integer of 2**63
    or more is among them (the general path refuses those or reads them otherwise), so that a
    request's answer does not depend on its length.

    None of those can be in rows plainly inside a range that holds neither 0 nor 1 and stays
    below 2**63 (``model.inside_proves_plain``): then the domain check, which the data plane
    needs anyway, is the only pass over the values. Otherwise ``hides_booleans`` and a min/max
    pass look. Under gunicorn, numpy passes over a request's values cost several times what
    they cost in process: 1000-row V2 requests took 90 us more server CPU with the decode's,
    the domain's and the output's checks than without (one server, paired rounds), where in
    process those cost 17 us; skipping the decode's where the range proves them needless took
    about 40 us off. Why: numpy lets go of the GIL for a pass over more than 500 values, and
    with the worker's other threads waiting for it each such pass costs thread switches (in
    process, 4 threads each doing one pass of 8000 values between Python work: +25 us of CPU
    and one voluntary context switch per pass, where one thread paid +5 us and none).
    """
    x = np.ascontiguousarray(rows)  # a copy only for V1's columns, transposed
    inside = model.plainly_inside(x)
    if inside and model.inside_proves_plain:
        return x, True
    flat = x.reshape(-1)  # in any order: these looks only ask whether some value is there
    if not (-_INT64_END < flat.min() and flat.max() < _INT64_END):
        return None
    return None if hides_booleans(flat, values) else (x, inside)


_INT64_END = 2.0**63


def hides_booleans(array: np.ndarray, data: list) -> bool:
    """Whether JSON true/false hid among the numbers (numpy reads them as 1 and 0).

    On larger arrays the scan of the Python values runs only when some value is exactly 0 or 1,
    so the usual request pays for two vectorised comparisons, not a Python loop.
    """
    if array.size > _SCAN_SIZE and not ((array == 0) | (array == 1)).any():
        return False
    rows = data if array.ndim > 1 else [data]
    return any(bool in map(type, _flat(row)) for row in rows)


def _flat(values: list) -> list:
    """The scalars of a nested list, row-major."""
    if values and isinstance(values[0], list):
        return [scalar for item in values for scalar in _flat(item)]
    return values


def _requested_outputs(
    model: OnnxModel, outputs: Any, binary_default: bool
) -> tuple[tuple[str, bool], ...]:
    if outputs is None or outputs == []:
        # The V2 default, "all outputs", is model.onnx's: the Jacobian only when named.
        return tuple((name, binary_default) for name in model.default_outputs)
    if not isinstance(outputs, list):
        raise BadRequest("'outputs' must be a list of {\"name\": ...} objects")
    chosen: dict[str, bool] = {}
    for item in outputs:
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str) or name not in model.output_types:
            raise BadRequest(
                f"unknown output {name!r}: model {model.name!r} has "
                f"{', '.join(map(repr, model.output_names))}"
            )
        if name in chosen:
            raise BadRequest(f"output {name!r} requested twice")
        parameters = _object(item.get("parameters"), f"output {name!r} 'parameters'")
        if parameters.get("classification"):
            raise BadRequest("the classification extension is not supported")
        chosen[name] = _flag(parameters, "binary_data", binary_default)
    return tuple(chosen.items())


def _object(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"{what} must be a JSON object")
    return value


def _flag(parameters: dict[str, Any], key: str, default: bool = False) -> bool:
    value = parameters.get(key, default)
    if not isinstance(value, bool):
        raise BadRequest(f"parameter {key!r} must be true or false")
    return value
