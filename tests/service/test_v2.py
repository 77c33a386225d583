"""The V2 protocol: metadata, health, JSON and binary inference."""

from __future__ import annotations

import functools
import gzip
import json
import zlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.bundles import make_bundle
from tests.decoding import CLIENT_VALUES, QUICK_DECODE_SETTINGS, check_quick_decode, usual_or
from tests.v2 import HEADER_LENGTH, binary_request, json_request, read_response

X = np.array([[0.5, 1.5], [2.0, -1.0], [3.0, 4.0]])


def test_server_metadata_lists_extensions(client):
    body = client.get("/v2").get_json()
    assert body["name"] == "surrogate-serving"
    assert set(body["extensions"]) == {"binary_tensor_data", "model_repository"}


@pytest.mark.parametrize(
    ("path", "expected"),
    [("/v2/health/live", {"live": True}), ("/v2/health/ready", {"ready": True})],
)
def test_health(client, path, expected):
    response = client.get(path)
    assert (response.status_code, response.get_json()) == (200, expected)


@pytest.mark.parametrize("path", ["/v2/models/wide", "/v2/models/wide/versions/1"])
def test_model_metadata(client, path):
    body = client.get(path).get_json()
    assert body["name"] == "wide"
    assert body["versions"] == ["1"]
    assert body["platform"] == "onnxruntime_onnx"
    assert body["inputs"] == [{"name": "inputs", "datatype": "FP32", "shape": [-1, 3]}]
    assert body["outputs"] == [{"name": "outputs", "datatype": "FP32", "shape": [-1, 2]}]
    assert body["parameters"] == {
        "inputs": ["x0", "x1", "x2"],
        "outputs": ["y0", "y1"],
        "domain": {"x0": [0.0, 2.0], "x1": [0.0, 2.0], "x2": [0.0, 2.0]},  # training ranges
    }


@pytest.mark.parametrize("path", ["/v2/models/linear/ready", "/v2/models/linear/versions/1/ready"])
def test_model_ready(client, path):
    response = client.get(path)
    assert (response.status_code, response.get_json()) == (200, {"name": "linear", "ready": True})


@pytest.mark.parametrize(
    ("data", "datatype"),
    [
        (X.ravel().tolist(), "FP32"),
        (X.tolist(), "FP32"),
        (X.tolist(), "FP64"),
        (X.astype(int).ravel().tolist(), "INT32"),
        (X.astype(int).tolist(), "INT64"),
    ],
    ids=["flat-fp32", "nested-fp32", "nested-fp64", "flat-int32", "nested-int64"],
)
def test_infer_json(client, bundles, data, datatype):
    response = client.post("/v2/models/linear/infer", json=json_request(data, [3, 2], datatype))
    assert response.status_code == 200, response.get_json()
    header, arrays = read_response(response)
    assert (header["model_name"], header["model_version"]) == ("linear", "1")
    assert header["outputs"][0]["datatype"] == "FP32"
    expected = bundles["linear"].predict(np.asarray(data, dtype=float).reshape(3, 2))
    np.testing.assert_allclose(arrays["outputs"], expected, rtol=1e-6)


def test_infer_without_content_type_and_with_version(client, bundles):
    response = client.post(
        "/v2/models/wide/versions/1/infer",
        data=json.dumps(json_request([[1, 2, 3]], [1, 3])),
    )
    assert response.status_code == 200
    assert "Content-Type" not in response.request.headers
    np.testing.assert_allclose(read_response(response)[1]["outputs"], [[22.0, 28.5]])


def test_id_is_echoed_and_absent_when_not_sent(client):
    with_id = client.post("/v2/models/linear/infer", json=json_request([1, 2], [1, 2], id="r-42"))
    without = client.post("/v2/models/linear/infer", json=json_request([1, 2], [1, 2]))
    assert with_id.get_json()["id"] == "r-42"
    assert "id" not in without.get_json()


@pytest.fixture
def multi_client(repo):
    from service import Settings, create_app

    make_bundle(repo, "multi", n_inputs=2, n_outputs=2, extra_outputs=("std", "jacobian"))
    return create_app(Settings(model_repository=repo)).test_client()


@pytest.mark.parametrize(
    ("requested", "names"),
    [
        (None, ["outputs", "std", "jacobian"]),
        ([], ["outputs", "std", "jacobian"]),
        ([{"name": "std"}], ["std"]),
        ([{"name": "jacobian"}, {"name": "outputs"}], ["jacobian", "outputs"]),
    ],
)
def test_requested_outputs(multi_client, requested, names):
    request = json_request([1.0, 2.0], [1, 2])
    if requested is not None:
        request["outputs"] = requested
    header, arrays = read_response(multi_client.post("/v2/models/multi/infer", json=request))
    assert [o["name"] for o in header["outputs"]] == names
    base = np.array([[7.0, 10.5]])  # [1, 2] @ [[1, 2], [3, 4]] + [0, 0.5]
    factors = {"outputs": 1, "std": 2, "jacobian": 3}
    for name in names:
        np.testing.assert_allclose(arrays[name], base * factors[name])


@pytest.mark.parametrize("datatype", ["FP32", "FP64", "FP16", "INT32", "UINT8"])
def test_binary_request_json_response(client, bundles, datatype):
    x = np.array([[1, 2], [3, 4], [5, 6]])
    body, headers = binary_request(x, datatype)
    response = client.post("/v2/models/linear/infer", data=body, headers=headers)
    assert response.status_code == 200, response.get_json()
    assert HEADER_LENGTH not in response.headers
    np.testing.assert_allclose(read_response(response)[1]["outputs"], bundles["linear"].predict(x))


@pytest.mark.parametrize(
    "fields",
    [
        {"parameters": {"binary_data_output": True}},
        {"outputs": [{"name": "outputs", "parameters": {"binary_data": True}}]},
    ],
    ids=["request-level", "per-output"],
)
def test_binary_round_trip(client, bundles, fields):
    x = np.random.default_rng(0).uniform(0, 2, size=(50, 3)).astype(np.float32)
    body, headers = binary_request(x, "FP32", **fields)
    response = client.post("/v2/models/wide/infer", data=body, headers=headers)
    assert response.status_code == 200, response.get_json()
    assert response.mimetype == "application/octet-stream"
    header, arrays = read_response(response)
    assert header["outputs"][0]["parameters"] == {"binary_data_size": 50 * 2 * 4}
    assert "data" not in header["outputs"][0]
    np.testing.assert_allclose(arrays["outputs"], bundles["wide"].predict(x), rtol=1e-6)


def test_binary_and_json_outputs_mixed(multi_client):
    request = json_request([1.0, 2.0], [1, 2], parameters={"binary_data_output": True})
    request["outputs"] = [
        {"name": "std", "parameters": {"binary_data": False}},
        {"name": "outputs"},
    ]
    header, arrays = read_response(multi_client.post("/v2/models/multi/infer", json=request))
    assert "data" in header["outputs"][0] and "data" not in header["outputs"][1]
    np.testing.assert_allclose(arrays["outputs"], [[7.0, 10.5]])
    np.testing.assert_allclose(arrays["std"], [[14.0, 21.0]])


@pytest.mark.parametrize(
    ("encoding", "compress"), [("gzip", gzip.compress), ("deflate", zlib.compress)]
)
def test_compressed_binary_request(client, bundles, encoding, compress):
    x = np.array([[1.0, 2.0]])
    body, headers = binary_request(x)
    response = client.post(
        "/v2/models/linear/infer",
        data=compress(body),
        headers={**headers, "Content-Encoding": encoding},
    )
    assert response.status_code == 200, response.get_json()
    np.testing.assert_allclose(read_response(response)[1]["outputs"], bundles["linear"].predict(x))


def test_empty_batch(client):
    response = client.post("/v2/models/wide/infer", json=json_request([], [0, 3]))
    assert response.status_code == 200
    assert response.get_json()["outputs"][0]["shape"] == [0, 2]


@st.composite
def _near_plain_headers(draw):
    """V2 request headers for the 2-input ``linear`` model: the usual one, with each of its
    parts changed now and then (to what the quick decode must refuse, or agree on)."""

    either = functools.partial(usual_or, draw)

    rows = draw(st.integers(1, 4))
    data = draw(st.lists(st.floats(-10, 10), min_size=2 * rows, max_size=2 * rows))
    if not draw(st.integers(0, 2)):  # a third of the time, some values are something else
        for _ in range(draw(st.integers(1, 2))):
            data[draw(st.integers(0, 2 * rows - 1))] = draw(CLIENT_VALUES)
    data = either(data, data[:-1], [*data, 1.0], [data[i:i + 2] for i in range(0, 2 * rows, 2)],
                  [])
    tensor = {"name": either("inputs", "outputs", "Inputs", 1, None),
              "datatype": either("FP32", "FP64", "INT32", "fp32", "BOOL", None),
              "shape": either([rows, 2], [rows, 3], [0, 2], [True, 2], [rows, True], [rows],
                              [rows, 2, 1], [2 * rows, 1], [float(rows), 2], "1,2", [-rows, 2]),
              "data": data}
    if not draw(st.integers(0, 9)):
        tensor["parameters"] = draw(st.sampled_from([{}, {"binary_data_size": 8}]))
    header: dict = {"inputs": either([tensor], [], [tensor, tensor], tensor, None, [[tensor]])}
    for key, values in (("id", ["r-1", 7, None, ""]),
                        ("parameters", [{}, {"domain_policy": "reject"}, None,
                                        {"binary_data_output": True}]),
                        ("outputs", [[], [{"name": "outputs"}], None,
                                     [{"name": "outputs", "parameters": {"binary_data": True}}]])):
        if not draw(st.integers(0, 9)):
            header[key] = draw(st.sampled_from(values))
    return header


@QUICK_DECODE_SETTINGS
@given(header=_near_plain_headers())
def test_the_quick_decode_of_the_usual_request_agrees_with_the_full_one(app, header):
    from service.codec import decode_request, plain_request

    model = app.extensions["surrogate.registry"].get("linear", None)
    check_quick_decode(lambda h: plain_request(model, h),
                       lambda h: decode_request(model, h, None), header)


def test_the_usual_request_takes_the_quick_decode(app):
    from service.codec import plain_request

    model = app.extensions["surrogate.registry"].get("linear", None)
    usual = {"id": "a", "inputs": [{"name": "inputs", "datatype": "FP32", "shape": [2, 2],
                                    "data": [1, 2.5, -3e38, 0.0]}]}
    request = plain_request(model, usual)
    assert request is not None and request.id == "a" and request.outputs == (("outputs", False),)
    # Outputs named as tritonclient names them take it too; a wrong one is left to the full
    # decode, which names it.
    for outputs, expected in (([{"name": "outputs"}], (("outputs", False),)),
                              ([{"name": "outputs", "parameters": {"binary_data": True}}],
                               (("outputs", True),)),
                              ([{"name": "nope"}], None), ("outputs", None)):
        named = plain_request(model, {**usual, "outputs": outputs})
        assert (named and named.outputs) == expected
    assert plain_request(model, {**usual, "parameters": {}}) is None
    assert request.inputs.tolist() == [[1.0, 2.5], [np.float32(-3e38), 0.0]]
    for refused in ([1, True, 2, 3], [1, 2, 3, 4e38], [1, 2, 3], [1, 2, 3, "4"], [1, 2, 3, None],
                    [0.5, 2, 3, 2**64], [[1, 2], [3, 4]]):
        usual["inputs"][0]["data"] = refused
        assert plain_request(model, usual) is None
