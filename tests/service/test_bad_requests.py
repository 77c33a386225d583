"""Every client mistake gets a 4xx with ``{"error": "..."}`` and leaves the service ready."""

from __future__ import annotations

import functools
import gzip
import io
import json
import re

import numpy as np
import pytest
from werkzeug.test import EnvironBuilder, run_wsgi_app

from tests.bundles import make_bundle
from tests.v2 import HEADER_LENGTH, binary_request, json_request

LIMIT = 4096
INFER = "/v2/models/linear/infer"
PREDICT = "/v1/models/linear:predict"
JSON = {"Content-Type": "application/json"}


def ok(**fields):
    """A valid request for ``linear`` (2 inputs), with ``fields`` overriding its members."""
    return {**json_request([1.0, 2.0], [1, 2]), **fields}


def tensor(**fields):
    """A request whose one input has ``fields`` overriding the valid tensor's (None removes)."""
    merged = {**json_request([1.0, 2.0], [1, 2])["inputs"][0], **fields}
    return {"inputs": [{k: v for k, v in merged.items() if v is not None}]}


def binary(header_length=None, extra=b"", size_delta=0, **fields):
    body, headers = binary_request(np.ones((1, 2)), **fields)
    header = json.loads(body[: int(headers[HEADER_LENGTH])])
    header["inputs"][0]["parameters"]["binary_data_size"] += size_delta
    head = json.dumps(header).encode()
    length = str(len(head)) if header_length is None else header_length
    return {HEADER_LENGTH: length}, head + body[int(headers[HEADER_LENGTH]) :] + extra


def binary_with_data():
    headers, body = binary()
    header = json.loads(body[: int(headers[HEADER_LENGTH])])
    header["inputs"][0]["data"] = [1.0, 2.0]
    head = json.dumps(header).encode()
    return {HEADER_LENGTH: str(len(head))}, head + np.ones(2, "<f4").tobytes()


GZIP = {**JSON, "Content-Encoding": "gzip"}
INDEX = "/v2/repository/index"
LOAD = "/v2/repository/models/{}/load"

# name: (method, path, headers, body, status, a fragment of the error message)
CASES = {
    # body syntax
    "not-json": ("POST", INFER, {}, b"{not json", 400, "not valid JSON"),
    "empty-body": ("POST", INFER, {}, b"", 400, "not valid JSON"),
    "not-an-object": ("POST", INFER, {}, [], 400, "must be a JSON object"),
    "nan-literal": ("POST", INFER, {}, b'{"inputs": [{"data": [NaN]}]}', 400, "not valid JSON"),
    "deeply-nested": ("POST", INFER, {}, b"[" * 1500 + b"]" * 1500, 400, "depth limit"),
    "invalid-utf8": ("POST", INFER, {}, b'{"id": "\xff"}', 400, "UTF-8"),
    "infinity-literal": ("POST", INFER, {}, b'{"inputs": [{"data": [Infinity]}]}', 400, "JSON"),
    "minus-infinity-literal": ("POST", INFER, {}, b'{"inputs": [{"data": [-Infinity]}]}', 400,
                               "not valid JSON"),
    "data-deeper-than-numpy": (
        "POST", INFER, {}, tensor(data=functools.reduce(lambda d, _: [d], range(100), [1, 2])),
        400, "not rectangular",
    ),
    # request structure
    "no-inputs": ("POST", INFER, {}, {"id": "x"}, 400, "'inputs' must be"),
    "inputs-not-a-list": ("POST", INFER, {}, ok(inputs={}), 400, "'inputs' must be"),
    "input-not-an-object": ("POST", INFER, {}, ok(inputs=[1]), 400, "string 'name'"),
    "wrong-input-name": ("POST", INFER, {}, tensor(name="x"), 400, "unknown input 'x'"),
    "input-twice": ("POST", INFER, {}, ok(inputs=ok()["inputs"] * 2), 400, "given 2 times"),
    "id-not-a-string": ("POST", INFER, {}, ok(id=7), 400, "'id' must be a string"),
    "parameters-not-an-object": ("POST", INFER, {}, ok(parameters=[1]), 400, "JSON object"),
    "binary-output-flag-not-bool": (
        "POST", INFER, {}, ok(parameters={"binary_data_output": "yes"}), 400, "true or false"
    ),
    # shapes and data
    "shape-data-mismatch": ("POST", INFER, {}, tensor(shape=[2, 2]), 400, "needs 4 values"),
    "width-mismatch": (
        "POST", INFER, {}, tensor(shape=[1, 3], data=[1, 2, 3]), 400, "2 input columns (x0, x1)"
    ),
    "rank-1-shape": ("POST", INFER, {}, tensor(shape=[2]), 400, "must be [rows, 2]"),
    "rank-3-shape": ("POST", INFER, {}, tensor(shape=[1, 1, 2]), 400, "must be [rows, 2]"),
    "negative-shape": ("POST", INFER, {}, tensor(shape=[-1, 2]), 400, "must be [rows, 2]"),
    "bool-in-shape": ("POST", INFER, {}, tensor(shape=[True, 2]), 400, "must be [rows, 2]"),
    "huge-shape": ("POST", INFER, {}, tensor(shape=[10**15, 2]), 400, "values, got 2"),
    "huge-shape-both-dims": ("POST", INFER, {}, tensor(shape=[2**62, 2**62]), 400, "got 2"),
    "shape-beyond-int64": ("POST", INFER, {}, tensor(shape=[2**70, 2]), 400, "must be [rows, 2]"),
    "zero-width-shape": ("POST", INFER, {}, tensor(shape=[1, 0], data=[]), 400, "2 input columns"),
    "zero-rows-with-data": ("POST", INFER, {}, tensor(shape=[0, 2]), 400, "needs 0 values, got 2"),
    "float-in-shape": ("POST", INFER, {}, tensor(shape=[1.0, 2]), 400, "must be [rows, 2]"),
    "shape-not-a-list": ("POST", INFER, {}, tensor(shape="1,2"), 400, "must be [rows, 2]"),
    "bool-in-data": ("POST", INFER, {}, tensor(data=[True, 2.0]), 400, "numbers only"),
    "output-overflows-float32": ("POST", INFER, {}, tensor(data=[3e38, 3e38]), 400, "not finite"),
    "nan-strings": ("POST", INFER, {}, tensor(data=["NaN", "1"]), 400, "numbers only"),
    "null-in-data": ("POST", INFER, {}, tensor(data=[None, 1.0]), 400, "numbers only"),
    "ragged-nested-data": ("POST", INFER, {}, tensor(data=[[1.0], [2, 3]]), 400, "rectangular"),
    "data-not-a-list": ("POST", INFER, {}, tensor(data=1.0), 400, "list of numbers"),
    "no-data": ("POST", INFER, {}, tensor(data=None), 400, "list of numbers"),
    "beyond-float32": (
        "POST", INFER, {}, tensor(data=[1e39, 1.0], datatype="FP64"), 400, "beyond float32"
    ),
    "int-too-large": (
        "POST", INFER, {}, tensor(data=[2**70, 1], datatype="INT64"), 400, "within 64 bits"
    ),
    "float-data-for-int32": ("POST", INFER, {}, tensor(datatype="INT32"), 400, "integers"),
    "unknown-datatype": ("POST", INFER, {}, tensor(datatype="BYTES"), 400, "'BYTES' is not"),
    "datatype-not-a-string": ("POST", INFER, {}, tensor(datatype=["FP32"]), 400, "is not one of"),
    # requested outputs
    "unknown-output": ("POST", INFER, {}, ok(outputs=[{"name": "std"}]), 400, "output 'std'"),
    "output-name-not-a-string": (
        "POST", INFER, {}, ok(outputs=[{"name": ["outputs"]}]), 400, "unknown output"
    ),
    "output-twice": ("POST", INFER, {}, ok(outputs=[{"name": "outputs"}] * 2), 400, "twice"),
    "outputs-not-a-list": ("POST", INFER, {}, ok(outputs="outputs"), 400, "must be a list"),
    "classification": (
        "POST", INFER, {}, ok(outputs=[{"name": "outputs", "parameters": {"classification": 2}}]),
        400, "classification extension",
    ),
    # binary tensor extension
    "header-length-not-int": ("POST", INFER, *binary(header_length="ten"), 400, "'ten' must"),
    "header-length-beyond-body": ("POST", INFER, *binary(header_length="999"), 400, "'999' must"),
    "header-length-zero": ("POST", INFER, *binary(header_length="0"), 400, "'0' must"),
    "binary-size-too-small": ("POST", INFER, *binary(size_delta=-4), 400, "binary_data_size 4,"),
    "binary-size-too-large": ("POST", INFER, *binary(size_delta=4), 400, "binary_data_size 12,"),
    "extra-binary-bytes": ("POST", INFER, *binary(extra=b"\0" * 4), 400, "12 bytes were sent"),
    "binary-and-data": ("POST", INFER, *binary_with_data(), 400, "both 'data' and"),
    "header-length-negative": ("POST", INFER, *binary(header_length="-5"), 400, "'-5' must"),
    "header-length-cuts-json": ("POST", INFER, *binary(header_length="10"), 400, "valid JSON"),
    "binary-size-negative": ("POST", INFER, *binary(size_delta=-100), 400, "binary_data_size -92"),
    "binary-header-csv": (
        "POST", INFER, {**binary()[0], "Content-Type": "text/csv"}, binary()[1], 415,
        "'text/csv'",
    ),
    "binary-size-without-header": (
        "POST", INFER, {}, tensor(data=None, parameters={"binary_data_size": 8}), 400,
        f"no {HEADER_LENGTH} header",
    ),
    # media types and sizes
    "csv": ("POST", INFER, {"Content-Type": "text/csv"}, b"1,2", 415,
            "'text/csv' is not supported"),
    "html": ("POST", INFER, {"Content-Type": "text/html"}, b"<p>", 415, "'text/html'"),
    "form-encoded-not-json": (
        "POST", INFER, {"Content-Type": "application/x-www-form-urlencoded"}, b"a=1", 400,
        "not valid JSON",
    ),
    "json-without-binary-header": (
        "POST", INFER, {"Content-Type": "application/octet-stream"}, b"{}", 415,
        "'application/octet-stream'",
    ),
    "brotli": ("POST", INFER, {**JSON, "Content-Encoding": "br"}, b"{}", 415, "'br'"),
    "xml": ("POST", INFER, {"Content-Type": "application/xml"}, b"<a/>", 415, "application/xml"),
    "multipart": (
        "POST", INFER, {"Content-Type": "multipart/form-data; boundary=x"}, b"--x--", 415,
        "'multipart/form-data'",
    ),
    "v1-octet-stream": ("POST", PREDICT, {"Content-Type": "application/octet-stream"}, b"{}", 415,
                        "'application/octet-stream'"),
    "index-csv": ("POST", INDEX, {"Content-Type": "text/csv"}, b"{}", 415, "text/csv"),
    "load-too-large": ("POST", LOAD.format("linear"), {}, b" " * (LIMIT + 1), 413, "exceeds"),
    "bad-gzip": ("POST", INFER, GZIP, b"not gzip", 400, "not valid gzip"),
    "truncated-gzip": ("POST", INFER, GZIP, gzip.compress(b"{}" * 99)[:-9], 400, "truncated"),
    "too-large": ("POST", INFER, {}, b" " * (LIMIT + 1), 413, f"exceeds {LIMIT} bytes"),
    "gzip-bomb": ("POST", INFER, GZIP, gzip.compress(b" " * 10**6), 413, "decompressed body"),
    # routing
    "unknown-model": ("POST", "/v2/models/nope/infer", {}, ok(), 404, "model 'nope' not found"),
    "unknown-version": (
        "POST", "/v2/models/linear/versions/9/infer", {}, ok(), 404, "no version '9'"
    ),
    "version-zero": ("GET", "/v2/models/linear/versions/0", {}, None, 404, "no version '0'"),
    "version-not-a-number": (
        "GET", "/v2/models/linear/versions/latest/ready", {}, None, 404, "no version 'latest'"
    ),
    "unknown-path": ("GET", "/v3/models", {}, None, 404, "no endpoint at /v3/models"),
    "get-infer": ("GET", INFER, {}, None, 405, "method GET not allowed"),
    "post-ready": ("POST", "/v2/health/ready", {}, b"", 405, "method POST not allowed"),
    "unknown-model-card": ("GET", "/v1/models/nope", {}, None, 404, "model 'nope' not found"),
    # hostile model names and versions: never a file system path, never a 500
    "name-nul": ("POST", "/v2/models/a%00b/infer", {}, ok(), 404, "not found"),
    "name-dot-dot": ("POST", "/v2/models/%2e%2e/infer", {}, ok(), 404, "model '..' not found"),
    "name-encoded-slash": ("POST", "/v2/models/..%2Flinear/infer", {}, ok(), 404, "no endpoint"),
    "name-10k-chars": ("GET", "/v2/models/" + "a" * 10_000 + "/ready", {}, None, 404, "not found"),
    "name-unicode": ("POST", "/v2/models/mod%C3%A8le/infer", {}, ok(), 404, "'modèle' not found"),
    "name-backslash": ("GET", "/v2/models/..%5C..%5Cetc", {}, None, 404, "not found"),
    "version-nul": ("GET", "/v2/models/linear/versions/1%00", {}, None, 404, "no version"),
    "version-arabic-digit": ("GET", "/v2/models/linear/versions/%D9%A1", {}, None, 404, "no vers"),
    "version-fullwidth-digit": ("GET", "/v2/models/linear/versions/%EF%BC%91", {}, None, 404,
                                "no version"),
    "version-5000-digits": (
        "POST", "/v2/models/linear/versions/" + "9" * 5000 + "/infer", {}, ok(), 404, "no version"
    ),
    "version-negative": ("GET", "/v2/models/linear/versions/-1/ready", {}, None, 404, "no vers"),
    "v1-name-nul": ("POST", "/v1/models/%00:predict", {}, {"instances": []}, 404, "not found"),
    "v1-name-traversal": (
        "POST", "/v1/models/..%2F..%2Flinear:predict", {}, {"instances": []}, 404, "no endpoint"
    ),
    "v1-version-5000-digits": ("GET", "/v1/models/linear/versions/" + "1" * 5000, {}, None, 404,
                               "no version"),
    # V1 predict
    "v1-missing-input": ("POST", PREDICT, {}, {"instances": [{"x0": 1}]}, 400, "input 'x1'"),
    "v1-unknown-input": (
        "POST", PREDICT, {}, {"instances": [{"x0": 1, "x1": 2, "q": 3}]}, 400, "input 'q'"
    ),
    "v1-short-list": ("POST", PREDICT, {}, {"instances": [[1.0]]}, 400, "expected 2 values"),
    "v1-long-list": ("POST", PREDICT, {}, {"instances": [[1, 2, 3]]}, 400, "got 3"),
    "v1-nan-string": (
        "POST", PREDICT, {}, {"instances": [[1.0, "NaN"]]}, 400, "'x1' is not a number: 'NaN'"
    ),
    "v1-bool": (
        "POST", PREDICT, {}, {"instances": [{"x0": True, "x1": 1}]}, 400, "'x0' is not a number"
    ),
    "v1-nested-value": ("POST", PREDICT, {}, {"instances": [[1, [2]]]}, 400, "'x1' is not a"),
    "v1-scalar-instance": ("POST", PREDICT, {}, {"instances": [1.0, 2.0]}, 400, "instance 0:"),
    "v1-no-instances": ("POST", PREDICT, {}, {"rows": [[1, 2]]}, 400, '{"instances": [...]}'),
    "v1-instances-and-inputs": (
        "POST", PREDICT, {}, {"instances": [[1, 2]], "inputs": [[1, 2]]}, 400, "or {\"inputs\""
    ),
    "v1-instances-not-list": ("POST", PREDICT, {}, {"instances": {"x0": 1}}, 400, "a list of"),
    "v1-inputs-scalar": ("POST", PREDICT, {}, {"inputs": 1.0}, 400, "'inputs' must be an object"),
    "v1-columns-missing": ("POST", PREDICT, {}, {"inputs": {"x0": [1]}}, 400, "missing input 'x1'"),
    "v1-columns-unknown": (
        "POST", PREDICT, {}, {"inputs": {"x0": [1], "x1": [2], "q": [3]}}, 400, "unknown input 'q'"
    ),
    "v1-columns-ragged": (
        "POST", PREDICT, {}, {"inputs": {"x0": [1, 2], "x1": [2]}}, 400, "'x1' has 1 values"
    ),
    "v1-column-scalar": (
        "POST", PREDICT, {}, {"inputs": {"x0": 1, "x1": 2}}, 400, "'x0' must be a list of numbers"
    ),
    "v1-column-text": (
        "POST", PREDICT, {}, {"inputs": {"x0": [1, 2], "x1": [2, "3"]}}, 400,
        "'x1' value 1 is not a number: '3'",
    ),
    "v1-column-bool": (
        "POST", PREDICT, {}, {"inputs": {"x0": [True], "x1": [2]}}, 400, "'x0' value 0 is not"
    ),
    "v1-tensor-short-row": ("POST", PREDICT, {}, {"inputs": [[1.0]]}, 400, "expected 2 values"),
    "v1-columns-overflow": (
        "POST", PREDICT, {}, {"inputs": {"x0": [3e38], "x1": [3e38]}}, 400, "not finite"
    ),
    "v1-not-json": ("POST", PREDICT, {}, b"instances", 400, "not valid JSON"),
    "v1-csv": ("POST", PREDICT, {"Content-Type": "text/csv"}, b"{}", 415, "text/csv"),
    "v1-xml": ("POST", PREDICT, {"Content-Type": "text/xml"}, b"<a/>", 415, "text/xml"),
    "v1-unknown-model": ("POST", "/v1/models/nope:predict", {}, {"instances": []}, 404, "'nope'"),
    "v1-nan-literal": ("POST", PREDICT, {}, b'{"instances": [[NaN, 1]]}', 400, "not valid JSON"),
    "v1-infinity-literal": ("POST", PREDICT, {}, b'{"instances": [[1, Infinity]]}', 400, "JSON"),
    "v1-deeply-nested": (
        "POST", PREDICT, {}, b'{"instances": ' + b"[" * 1100 + b"]" * 1100 + b"}", 400, "depth"
    ),
    "v1-parameters-a-list": (
        "POST", PREDICT, {}, {"instances": [[1, 2]], "parameters": []}, 400, "JSON object"
    ),
    "v1-parameters-false": (
        "POST", PREDICT, {}, {"instances": [[1, 2]], "parameters": False}, 400, "JSON object"
    ),
    "v1-output-overflows-float32": (
        "POST", PREDICT, {}, {"instances": [[3e38, 3e38]]}, 400, "not finite"
    ),
    # repository extension
    "index-ready-not-bool": ("POST", INDEX, {}, {"ready": "yes"}, 400, "'ready' must be"),
    "index-body-not-object": ("POST", INDEX, {}, [1], 400, "must be a JSON object"),
    "load-config-override": (
        "POST", LOAD.format("linear"), {}, {"parameters": {"config": "{}"}}, 400,
        "['config'] are not supported",
    ),
    "load-unknown-model": ("POST", LOAD.format("nope"), {}, None, 404, "not found in the model"),
    "load-path-traversal": ("POST", LOAD.format("..%2F..%2Fetc"), {}, None, 404, "no endpoint"),
    "load-dot-dot": ("POST", LOAD.format(".."), {}, None, 404, "not found in the model"),
    "load-encoded-dot-dot": ("POST", LOAD.format("%2e%2e"), {}, None, 404, "'..' not found"),
    "load-nul": ("POST", LOAD.format("linear%00"), {}, None, 404, "not found in the model"),
    "load-10k-chars": ("POST", LOAD.format("a" * 10_000), {}, None, 404, "not found in the"),
    "load-parameters-a-list": (
        "POST", LOAD.format("linear"), {}, {"parameters": []}, 400, "'parameters' must be"
    ),
    "unload-traversal": (
        "POST", "/v2/repository/models/..%2F..%2Flinear/unload", {}, None, 404, "no endpoint"
    ),
    "unload-unknown-model": (
        "POST", "/v2/repository/models/nope/unload", {}, None, 404, "model 'nope' not found"
    ),
}


@pytest.fixture
def settings(repo):
    from service.settings import Settings

    return Settings(model_repository=repo, max_request_bytes=LIMIT)


@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "status", "message"), CASES.values(), ids=CASES
)
def test_bad_request(client, method, path, headers, body, status, message):
    kwargs = {"headers": headers}
    if isinstance(body, bytes):
        kwargs["data"] = body
    elif body is not None:
        kwargs["json"] = body
    response = client.open(path, method=method, **kwargs)
    assert response.status_code == status, response.get_data()
    payload = response.get_json()
    assert list(payload) == ["error"] and message in payload["error"]
    assert client.get("/v2/health/ready").status_code == 200
    assert client.post(INFER, json=ok()).status_code == 200


def test_method_not_allowed_keeps_allow_header(client):
    response = client.delete("/v2/health/live")
    assert response.status_code == 405
    assert "GET" in response.headers["Allow"]


def test_unexpected_error_is_a_json_500_with_request_id(app, caplog):
    app.add_url_rule("/boom", "boom", lambda: 1 / 0)
    response = app.test_client().get("/boom", headers={"X-Request-ID": "req-500"})
    assert response.status_code == 500
    assert response.get_json() == {"error": "internal server error (request id req-500)"}
    assert response.headers["X-Request-ID"] == "req-500"
    (record,) = [r for r in caplog.records if r.levelname == "ERROR"]
    assert record.request_id == "req-500" and record.exc_info[0] is ZeroDivisionError


READ_AS_JSON = {
    "no-content-type": {},
    "json-with-charset": {"Content-Type": "application/json; charset=utf-8"},
    # what `curl -d` sends unless told otherwise
    "curl-default": {"Content-Type": "application/x-www-form-urlencoded"},
    "text-plain": {"Content-Type": "text/plain"},
    "text-json": {"Content-Type": "text/json"},
    "vendor-json": {"Content-Type": "application/vnd.example+json"},
}


@pytest.mark.parametrize("headers", READ_AS_JSON.values(), ids=READ_AS_JSON)
@pytest.mark.parametrize(("path", "body"), [
    (INFER, ok()), (PREDICT, {"instances": [[1.0, 2.0]]}), (INDEX, {"ready": True}),
], ids=["v2-infer", "v1-predict", "index"])
def test_a_json_body_is_read_whatever_its_content_type_claims(client, headers, path, body):
    response = client.post(path, data=json.dumps(body), headers=headers)
    assert "Content-Type" not in response.request.headers or headers
    assert response.status_code == 200, response.get_data()


def test_a_binary_request_is_read_whatever_text_type_it_claims(client):
    headers, body = binary()
    response = client.post(INFER, data=body, headers={**headers, "Content-Type": "text/plain"})
    assert response.status_code == 200, response.get_data()


@pytest.mark.parametrize(("size", "status"), [(LIMIT, 200), (LIMIT + 1, 413)],
                         ids=["at-the-limit", "over-the-limit"])
def test_body_without_content_length_is_held_to_the_limit(app, size, status):
    # As gunicorn passes a chunked body: no CONTENT_LENGTH (EnvironBuilder sets none without
    # data), and a stream that ends where the body does.
    body = json.dumps({"instances": [[1.0, 2.0]]}).encode()
    body = b" " * (size - len(body)) + body
    environ = EnvironBuilder(path=PREDICT, method="POST").get_environ()
    environ.update({"wsgi.input": io.BytesIO(body), "wsgi.input_terminated": True})
    chunks, status_line, _ = run_wsgi_app(app, environ)
    assert int(status_line.split()[0]) == status, b"".join(chunks)


@pytest.mark.parametrize(
    ("datatype", "data", "bounds"),
    [("UINT8", [-1, 2], "[0, 255]"), ("INT8", [1, 300], "[-128, 127]"),
     ("FP16", [1e6, 1.0], "[-65504.0, 65504.0]")],
)
def test_json_data_must_fit_its_declared_datatype(client, datatype, data, bounds):
    response = client.post(INFER, json=tensor(data=data, datatype=datatype))
    assert response.status_code == 400
    assert f"{datatype} data must lie in {bounds}" in response.get_json()["error"]


# Long lists of numbers are converted another way than short ones (codec.plain_numbers): the
# same mistake gets the same answer, wherever it is.
LONG_ROWS = 100
BAD_VALUES = {"text": "3", "null": None, "bool": True, "nested": [2.0], "beyond-float32": 1e39,
              "int-beyond-float64": 10**400}  # not JSON orjson reads  # fmt: skip


def assert_answered_alike(short, long):
    """The same 4xx and error, but for the row, value, column or count it names."""
    assert 400 <= short.status_code < 500 and long.status_code == short.status_code
    said = [re.sub(r"(value|row|column|char|of) \d+", r"\1 N", r.get_json()["error"])
            for r in (short, long)]
    assert said[0] == said[1]


@pytest.mark.parametrize("bad", BAD_VALUES.values(), ids=BAD_VALUES)
def test_a_bad_value_is_answered_alike_in_a_long_body_and_a_short_one(client, bad):
    def v2(rows):
        data = [1.5] * (2 * rows)
        data[-1] = bad
        return client.post(INFER, json=tensor(shape=[rows, 2], data=data))

    def v1_columns(rows):
        return client.post(PREDICT, json={"inputs": {"x0": [1.5] * rows,
                                                     "x1": [1.5] * (rows - 1) + [bad]}})

    for send in (v2, v1_columns):
        assert_answered_alike(send(1), send(LONG_ROWS))


@pytest.fixture
def ranged_client(repo):
    """A client whose ``ranged`` model's inputs are trained on [1.25, 2] and [10, 20]: a range
    holding neither 0 nor 1, so long requests inside it skip the look for true/false."""
    from service import create_app
    from service.settings import Settings

    inputs = [{"name": "x0", "unit": "m", "min": 1.25, "max": 2.0},
              {"name": "x1", "unit": "m", "min": 10.0, "max": 20.0}]
    make_bundle(repo, "ranged", n_inputs=2, card_overrides={"inputs": inputs})
    app = create_app(Settings(model_repository=repo, domain_policy="reject"))
    assert app.extensions["surrogate.registry"].get("ranged", None).inside_proves_plain
    return app.test_client()


@pytest.mark.parametrize("bad", [True, False, 2**64, -(2**63) - 1, 10**30],
                         ids=["true", "false", "2**64", "below-int64", "10**30"])
def test_values_the_range_rules_out_are_answered_alike_in_long_and_short_bodies(ranged_client,
                                                                                 bad):
    """Where the range proves long rows plain (``ranged``), a value the general path refuses
    or reads otherwise is still found: it is outside the range, so the quick path looks."""
    def v2(rows):
        data = [1.5, 15.0] * rows
        data[-1] = bad
        return ranged_client.post("/v2/models/ranged/infer",
                                  json=tensor(shape=[rows, 2], data=data))

    def v1_columns(rows):
        return ranged_client.post("/v1/models/ranged:predict", json={
            "inputs": {"x0": [1.5] * rows, "x1": [15.0] * (rows - 1) + [bad]}})

    for send in (v2, v1_columns):
        assert_answered_alike(send(1), send(LONG_ROWS))


def test_rows_inside_a_range_without_0_and_1_are_read_as_the_general_path_reads_them(
        ranged_client):
    rng = np.random.default_rng(1)
    rows = [[float(a), int(b)] for a, b in zip(rng.uniform(1.25, 2, LONG_ROWS),
                                               rng.integers(10, 21, LONG_ROWS), strict=True)]
    rows[0] = [1.25, 20]  # on the bounds
    flat = ranged_client.post("/v2/models/ranged/infer",
                              json=tensor(shape=[LONG_ROWS, 2], data=sum(rows, [])))
    nested = ranged_client.post("/v2/models/ranged/infer",
                                json=tensor(shape=[LONG_ROWS, 2], data=rows))
    assert flat.status_code == nested.status_code == 200
    assert flat.get_json()["outputs"] == nested.get_json()["outputs"]
    columns = ranged_client.post("/v1/models/ranged:predict", json={
        "inputs": {"x0": [r[0] for r in rows], "x1": [r[1] for r in rows]}})
    instances = ranged_client.post("/v1/models/ranged:predict", json={"instances": rows})
    assert columns.status_code == instances.status_code == 200
    by_row = [list(row) for row in zip(*columns.get_json()["outputs"].values(), strict=True)]
    assert by_row == instances.get_json()["predictions"]


def test_long_and_short_ways_of_reading_numbers_give_the_same_predictions(client):
    rng = np.random.default_rng(0)
    rows = [[float(a), int(b)] for a, b in zip(rng.uniform(-3, 3, LONG_ROWS),
                                               rng.integers(-5, 5, LONG_ROWS), strict=True)]
    flat = client.post(INFER, json=tensor(shape=[LONG_ROWS, 2], data=sum(rows, [])))
    nested = client.post(INFER, json=tensor(shape=[LONG_ROWS, 2], data=rows))
    assert flat.status_code == nested.status_code == 200
    assert flat.get_json()["outputs"] == nested.get_json()["outputs"]
    columns = client.post(PREDICT, json={"inputs": {"x0": [r[0] for r in rows],
                                                    "x1": [r[1] for r in rows]}})
    instances = client.post(PREDICT, json={"instances": rows})
    assert columns.status_code == instances.status_code == 200
    by_row = [list(row) for row in zip(*columns.get_json()["outputs"].values(), strict=True)]
    assert by_row == instances.get_json()["predictions"]
