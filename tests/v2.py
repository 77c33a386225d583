"""Build V2 requests and read V2 responses the way tritonclient does, without tritonclient."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

HEADER_LENGTH = "Inference-Header-Content-Length"
NUMPY_DATATYPES = {"FP16": "<f2", "FP32": "<f4", "FP64": "<f8", "INT32": "<i4", "UINT8": "u1"}


def json_request(data: Any, shape: list[int], datatype: str = "FP32", **fields: Any) -> dict:
    """A JSON V2 request with one input ``inputs``; ``fields`` become top-level members."""
    tensor = {"name": "inputs", "shape": shape, "datatype": datatype, "data": data}
    return {"inputs": [tensor], **fields}


def binary_request(x: np.ndarray, datatype: str = "FP32", **fields: Any) -> tuple[bytes, dict]:
    """A binary-tensor V2 request for ``x`` and its headers (no Content-Type, as tritonclient)."""
    raw = np.ascontiguousarray(x, dtype=NUMPY_DATATYPES[datatype]).tobytes()
    tensor = {
        "name": "inputs",
        "shape": list(x.shape),
        "datatype": datatype,
        "parameters": {"binary_data_size": len(raw)},
    }
    header = json.dumps({"inputs": [tensor], **fields}).encode()
    return header + raw, {HEADER_LENGTH: str(len(header))}


def read_response(response) -> tuple[dict, dict[str, np.ndarray]]:
    """The JSON header of a V2 response and each output as an array, binary or JSON."""
    length = response.headers.get(HEADER_LENGTH)
    body = response.get_data()
    header = json.loads(body if length is None else body[: int(length)])
    arrays, offset = {}, int(length or 0)
    for output in header["outputs"]:
        dtype = np.dtype(NUMPY_DATATYPES[output["datatype"]])
        size = (output.get("parameters") or {}).get("binary_data_size")
        if size is None:
            arrays[output["name"]] = np.asarray(output["data"], dtype=dtype)
        else:
            arrays[output["name"]] = np.frombuffer(body[offset : offset + size], dtype=dtype)
            offset += size
        arrays[output["name"]] = arrays[output["name"]].reshape(output["shape"])
    assert offset == (len(body) if length is not None else 0)
    return header, arrays
