"""Trust features over both protocols: extra outputs (std, jacobian) and the domain policy.

The ``trusted`` model is a linear bundle (3 inputs in [0, 2], 2 outputs) with a ``std`` output
(``2 * outputs``) and a ``jacobian.onnx`` graph (``W.T`` on every row), written by make_bundle
as the bundle contract says; its expected answers are computed from its weights.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from service import create_app
from service.settings import Settings
from tests.bundles import make_bundle
from tests.v2 import binary_request, json_request, read_response

INSIDE = [[0.5, 1.0, 1.5], [0.0, 2.0, 1.0]]
# Row 1 is below x1's range, row 2 above x0's and x2's.
MIXED = [[0.5, 1.0, 1.5], [1.0, -0.5, 1.0], [2.5, 1.0, 9.0]]


@pytest.fixture
def trusted(tmp_path):
    return make_bundle(
        tmp_path / "models", "trusted", n_inputs=3, n_outputs=2,
        extra_outputs=("std",), jacobian=True,
    )


def _client(trusted, **settings):
    repo = trusted.path.parents[1]
    make_bundle(repo, "plain", n_inputs=3, n_outputs=2)
    return create_app(Settings(model_repository=repo, **settings)).test_client()


@pytest.fixture
def client(trusted):
    return _client(trusted)


def _infer(client, rows, outputs=None, **parameters):
    fields = {"parameters": parameters} if parameters else {}
    if outputs is not None:
        fields["outputs"] = [{"name": name} for name in outputs]
    body = json_request(rows, [len(rows), 3], **fields)
    return client.post("/v2/models/trusted/infer", json=body)


def _predict(client, rows, model="trusted", **parameters):
    body = {"instances": rows, **({"parameters": parameters} if parameters else {})}
    return client.post(f"/v1/models/{model}:predict", json=body)


# --- extra outputs -----------------------------------------------------------------------------

def test_metadata_lists_every_output_of_every_graph(client):
    outputs = client.get("/v2/models/trusted").get_json()["outputs"]
    assert outputs == [
        {"name": "outputs", "datatype": "FP32", "shape": [-1, 2]},
        {"name": "std", "datatype": "FP32", "shape": [-1, 2]},
        {"name": "jacobian", "datatype": "FP32", "shape": [-1, 2, 3]},
    ]


@pytest.mark.parametrize(
    "asked", [["jacobian"], ["outputs", "jacobian"], ["std", "jacobian", "outputs"], None]
)
def test_v2_returns_the_outputs_asked_for(client, trusted, asked):
    response = _infer(client, INSIDE, asked)
    assert response.status_code == 200, response.get_json()
    header, arrays = read_response(response)
    # Unnamed, the outputs are model.onnx's: the Jacobian graph runs only when asked for.
    assert [o["name"] for o in header["outputs"]] == (asked or ["outputs", "std"])
    expected = trusted.predict(INSIDE)
    if "outputs" in arrays:
        np.testing.assert_allclose(arrays["outputs"], expected, rtol=1e-6)
    if "std" in arrays:
        np.testing.assert_allclose(arrays["std"], 2 * expected, rtol=1e-6)
    if asked:
        jacobian = np.broadcast_to(trusted.weights.T, (2, 2, 3))
        np.testing.assert_array_equal(arrays["jacobian"], jacobian)


def test_v2_binary_jacobian(client, trusted):
    x = np.asarray(INSIDE, dtype=np.float32)
    body, headers = binary_request(
        x, outputs=[{"name": "jacobian", "parameters": {"binary_data": True}}]
    )
    response = client.post("/v2/models/trusted/infer", data=body, headers=headers)
    header, arrays = read_response(response)
    assert header["outputs"][0]["shape"] == [2, 2, 3]
    np.testing.assert_array_equal(arrays["jacobian"][1], trusted.weights.T)


FEATURES, TARGETS = ("x0", "x1", "x2"), ("y0", "y1")
LAYOUTS = ("named_rows", "rows", "named_columns", "tensor")


def _v1_body(rows, layout):
    """``rows`` in one of V1's four body layouts."""
    return {
        "named_rows": {"instances": [dict(zip(FEATURES, row, strict=True)) for row in rows]},
        "rows": {"instances": rows},
        "named_columns": {"inputs": {name: [row[j] for row in rows]
                                     for j, name in enumerate(FEATURES)}},
        "tensor": {"inputs": rows},
    }[layout]  # fmt: skip


def _from_v1(value, layout, jacobian=False):
    """An answer's predictions, std or Jacobian back as a (rows, outputs[, inputs]) array."""
    if layout in ("rows", "tensor"):
        return np.array(value)
    if layout == "named_rows":
        return np.array([[[row[t][f] for f in FEATURES] if jacobian else row[t] for t in TARGETS]
                         for row in value])  # fmt: skip
    columns = np.array([[value[t][f] for f in FEATURES] if jacobian else value[t]
                        for t in TARGETS])  # fmt: skip
    return np.moveaxis(columns, -1, 0)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_v1_return_std_and_jacobian_in_every_layout(client, trusted, layout):
    body = {**_v1_body(INSIDE, layout), "parameters": {"return_std": True,
                                                       "return_jacobian": True}}  # fmt: skip
    response = client.post("/v1/models/trusted:predict", json=body)
    assert response.status_code == 200, response.get_json()
    answer = response.get_json()
    key = "predictions" if "instances" in body else "outputs"
    assert set(answer) == {key, "std", "jacobian"}
    y = trusted.predict(INSIDE)
    np.testing.assert_allclose(_from_v1(answer[key], layout), y, rtol=1e-6)
    np.testing.assert_allclose(_from_v1(answer["std"], layout), 2 * y, rtol=1e-6)
    W = trusted.weights  # d y_i / d x_j = W[j, i]
    np.testing.assert_allclose(_from_v1(answer["jacobian"], layout, jacobian=True),
                               np.broadcast_to(W.T, (len(INSIDE), 2, 3)), rtol=1e-6)  # fmt: skip


@pytest.mark.parametrize("layout", LAYOUTS)
def test_v1_warns_of_rows_outside_in_every_layout(client, trusted, layout):
    response = client.post("/v1/models/trusted:predict", json=_v1_body(MIXED, layout))
    answer = response.get_json()
    assert {k: answer[k] for k in WARNING} == WARNING
    key = "predictions" if layout in ("named_rows", "rows") else "outputs"
    np.testing.assert_allclose(_from_v1(answer[key], layout), trusted.predict(MIXED), rtol=1e-6)


def test_v1_named_rows_answer_named_values(client, trusted):
    response = _predict(client, [dict(zip(FEATURES, INSIDE[0], strict=True))],
                        return_jacobian=True)  # fmt: skip
    assert response.get_json()["jacobian"][0] == {
        t: {f: pytest.approx(float(trusted.weights[j, i])) for j, f in enumerate(FEATURES)}
        for i, t in enumerate(TARGETS)
    }


def test_v1_without_parameters_answers_predictions_only(client):
    assert set(_predict(client, INSIDE).get_json()) == {"predictions"}


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"return_std": True}, "model 'plain' has no 'std' output"),
        ({"return_jacobian": True}, "model 'plain' has no 'jacobian' output"),
        ({"return_std": "yes"}, "'return_std' must be true or false"),
        ({"return_sd": True}, "unknown parameter 'return_sd'"),
        ({"domain_policy": "clip"}, "'domain_policy' must be one of warn, reject, ignore"),
    ],
)
def test_v1_bad_parameters(client, parameters, message):
    response = _predict(client, INSIDE, model="plain", **parameters)
    assert response.status_code == 400
    assert message in response.get_json()["error"]


def test_large_requests_run_in_chunks_with_the_same_answer(trusted):
    client = _client(trusted, chunk_rows=3)
    rows = np.random.default_rng(0).uniform(0, 2, (10, 3)).round(3).tolist()
    header, arrays = read_response(_infer(client, rows, ["outputs", "jacobian"]))
    np.testing.assert_allclose(arrays["outputs"], trusted.predict(rows), rtol=1e-6)
    assert arrays["jacobian"].shape == (10, 2, 3)


# --- domain of validity ------------------------------------------------------------------------

WARNING = {
    "out_of_domain_rows": 2,
    "out_of_domain": [{"row": 1, "inputs": ["x1"]}, {"row": 2, "inputs": ["x0", "x2"]}],
}


def test_v2_warn_is_the_default_and_lists_the_rows(client, trusted):
    response = _infer(client, MIXED)
    assert response.status_code == 200
    header, arrays = read_response(response)
    assert header["parameters"] == WARNING
    np.testing.assert_allclose(arrays["outputs"], trusted.predict(MIXED), rtol=1e-6)


def test_v2_inside_the_domain_adds_nothing(client):
    assert "parameters" not in _infer(client, INSIDE).get_json()


def test_v2_reject_names_the_input_value_and_range(client):
    response = _infer(client, MIXED, domain_policy="reject")
    assert response.status_code == 422
    assert response.get_json() == {
        "error": "row 1: input 'x1' = -0.5 is outside the training range [0, 2] "
        "(2 of 3 rows are; domain_policy reject)"
    }
    assert _infer(client, INSIDE, domain_policy="reject").status_code == 200


def test_v2_ignore_does_not_check(client):
    response = _infer(client, MIXED, domain_policy="ignore")
    assert response.status_code == 200 and "parameters" not in response.get_json()


def test_the_setting_is_the_default_and_a_request_overrides_it(trusted):
    client = _client(trusted, domain_policy="reject")
    assert _infer(client, MIXED).status_code == 422
    assert _predict(client, MIXED).status_code == 422
    assert read_response(_infer(client, MIXED, domain_policy="warn"))[0]["parameters"] == WARNING


def test_v1_policies(client):
    warned = _predict(client, MIXED).get_json()
    assert len(warned["predictions"]) == 3
    assert {k: warned[k] for k in WARNING} == WARNING
    rejected = _predict(client, MIXED, domain_policy="reject")
    assert rejected.status_code == 422 and "input 'x1' = -0.5" in rejected.get_json()["error"]
    assert set(_predict(client, MIXED, domain_policy="ignore").get_json()) == {"predictions"}


def test_v2_bad_policy_is_a_400(client):
    response = _infer(client, INSIDE, domain_policy=3)
    assert response.status_code == 400
    assert "'domain_policy' must be one of warn, reject, ignore" in response.get_json()["error"]


def test_the_warning_lists_at_most_100_rows_but_counts_all(client):
    response = _infer(client, [[3.0, 1.0, 1.0]] * 150)
    parameters = response.get_json()["parameters"]
    assert parameters["out_of_domain_rows"] == 150
    assert len(parameters["out_of_domain"]) == 100


def test_out_of_domain_rows_are_counted_in_the_metrics(client):
    def counted() -> float:
        text = client.get("/metrics").get_data(as_text=True)
        for line in text.splitlines():
            if line.startswith("surrogate_out_of_domain_rows_total{") and '"trusted"' in line:
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    before = counted()
    _infer(client, MIXED)
    _infer(client, MIXED, domain_policy="reject")
    _infer(client, MIXED, domain_policy="ignore")  # not checked, so not counted
    _predict(client, MIXED)
    assert counted() - before == 6


def test_a_card_without_ranges_is_unbounded(tmp_path):
    repo = tmp_path / "models"
    make_bundle(repo, "open", card_overrides={"inputs": [{"name": "a"}, {"name": "b", "min": 0}]})
    client = create_app(Settings(model_repository=repo)).test_client()
    body = json_request([[1e6, 5.0]], [1, 2], parameters={"domain_policy": "reject"})
    assert client.post("/v2/models/open/infer", json=body).status_code == 200
    body = json_request([[1e6, -1.0]], [1, 2], parameters={"domain_policy": "reject"})
    response = client.post("/v2/models/open/infer", json=body)
    assert response.status_code == 422 and "input 'b' = -1" in response.get_json()["error"]
    assert client.get("/v2/models/open").get_json()["parameters"]["domain"] == {
        "a": [None, None], "b": [0.0, None]
    }


# --- broken extra graphs -----------------------------------------------------------------------

# A card written before cards declared datatypes: the service opens jacobian.onnx at load to
# learn its outputs, so whatever is wrong with it shows then.
OLD_CARD = {"tensors": {"outputs": [{"name": "outputs", "shape": [-1, 2]},
                                    {"name": "jacobian", "file": "jacobian.onnx"}]}}


def _damaged(repo, damage, overrides=None):
    bundle = make_bundle(repo, "jac", jacobian=True, card_overrides=overrides)
    if damage == "delete":
        (bundle.path / "jacobian.onnx").unlink()
    elif damage == "corrupt":
        (bundle.path / "jacobian.onnx").write_bytes(b"not onnx")
        (bundle.path / "model.json").write_text(
            (bundle.path / "model.json").read_text().replace(
                bundle.card["onnx"]["graphs"]["jacobian.onnx"]["sha256"],
                hashlib.sha256(b"not onnx").hexdigest(),
            )
        )
    return bundle


@pytest.mark.parametrize(
    ("overrides", "damage", "reason"),
    [
        ({"onnx": {"graphs": {"jacobian.onnx": {"sha256": "0" * 64}}}}, None,
         "sha256 of jacobian.onnx is"),
        (None, "delete", "jacobian.onnx is missing"),
        ({"tensors": {"outputs": [{"name": "outputs"}, {"name": "jacobian",
                                                         "file": "../plain/1/model.onnx"}]}},
         None, "must be a plain *.onnx file name"),
        ({"tensors": {"outputs": [{"name": "outputs"}, {"name": "jacobian", "datatype": "FP8",
                                                         "file": "jacobian.onnx"}]}},
         None, "datatype 'FP8' is not one of"),
        (OLD_CARD, "corrupt", "onnxruntime cannot load jacobian.onnx"),
        ({"tensors": {"outputs": [{"name": "outputs"}, {"name": "hessian",
                                                         "file": "jacobian.onnx"}]}},
         None, "card lists outputs ['hessian'] in jacobian.onnx"),
    ],
    ids=["sha256", "missing", "traversal", "datatype", "old-card-corrupt", "old-card-unknown"],
)
def test_an_extra_graph_that_fails_at_load_makes_the_version_unavailable(
        tmp_path, overrides, damage, reason):
    repo = tmp_path / "models"
    make_bundle(repo, "plain")
    _damaged(repo, damage, overrides)
    client = create_app(Settings(model_repository=repo)).test_client()
    index = {row["name"]: row for row in client.post("/v2/repository/index").get_json()}
    assert index["plain"]["state"] == "READY"
    assert index["jac"]["state"] == "UNAVAILABLE"
    assert reason in index["jac"]["reason"]


@pytest.mark.parametrize(
    ("overrides", "damage", "reason"),
    [
        (None, "corrupt", "onnxruntime cannot load jacobian.onnx"),
        ({"tensors": {"outputs": [{"name": "outputs", "shape": [-1, 2], "datatype": "FP32"},
                                  {"name": "hessian", "shape": [-1, 2, 2], "datatype": "FP32",
                                   "file": "jacobian.onnx"}]}},
         None, "card lists outputs ['hessian'] in jacobian.onnx"),
        ({"tensors": {"outputs": [{"name": "outputs", "shape": [-1, 2], "datatype": "FP32"},
                                  {"name": "jacobian", "shape": [-1, 2, 2], "datatype": "FP64",
                                   "file": "jacobian.onnx"}]}},
         None, "jacobian.onnx output 'jacobian' is tensor(float), the card says FP64"),
    ],
    ids=["corrupt", "unknown-output", "wrong-datatype"],
)
def test_an_extra_graph_that_fails_on_first_use_answers_503_and_the_model_keeps_serving(
        tmp_path, overrides, damage, reason):
    """The card declares the graph's outputs, so it is opened on first use: its sha256 matched
    at load (the file is the one the card names), what is wrong inside shows when asked for."""
    repo = tmp_path / "models"
    bundle = _damaged(repo, damage, overrides)
    client = create_app(Settings(model_repository=repo)).test_client()
    assert client.get("/v2/models/jac/ready").status_code == 200
    asked = bundle.card["tensors"]["outputs"][-1]["name"]
    for _ in range(2):  # it is tried again: a file put right on disk would serve
        response = client.post("/v2/models/jac/infer", json=json_request(
            [[1.0, 2.0]], [1, 2], outputs=[{"name": asked}]))
        assert response.status_code == 503, response.get_data(as_text=True)
        assert reason in response.get_json()["error"]
    plain = client.post("/v2/models/jac/infer", json=json_request([[1.0, 2.0]], [1, 2]))
    assert plain.status_code == 200
    np.testing.assert_allclose(read_response(plain)[1]["outputs"],
                               bundle.predict(np.array([[1.0, 2.0]], np.float32)), rtol=1e-6)
