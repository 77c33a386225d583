"""The V1 convenience API: model list, model card, named-input predictions."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from service import create_app
from service.settings import Settings
from tests.bundles import make_bundle
from tests.decoding import CLIENT_VALUES, QUICK_DECODE_SETTINGS, check_quick_decode, usual_or


def test_list_models(client):
    models = {m["name"]: m for m in client.get("/v1/models").get_json()["models"]}
    assert set(models) == {"linear", "wide"}
    assert models["wide"] == {
        "name": "wide",
        "state": "READY",
        "versions": ["1"],
        "latest": "1",
        "inputs": ["x0", "x1", "x2"],
        "outputs": ["y0", "y1"],
        "reason": "",
    }


@pytest.mark.parametrize("path", ["/v1/models/wide", "/v1/models/wide/versions/1"])
def test_model_readiness_is_kserves_and_carries_the_bundles_model_json(client, bundles, path):
    response = client.get(path)
    assert response.status_code == 200
    card = json.loads((bundles["wide"].path / "model.json").read_text())
    assert response.get_json() == {**card, "ready": True}
    assert response.get_json()["name"] == "wide"  # KServe V1: {"name": ..., "ready": ...}


def test_the_root_is_kserves_v1_liveness(client):
    response = client.get("/")
    assert response.status_code == 200 and response.get_json() == {"status": "alive"}


def test_a_model_that_is_not_ready_answers_503_as_kserve_does(app, bundles):
    app.extensions["surrogate.registry"].unload("wide")
    response = app.test_client().get("/v1/models/wide")
    assert response.status_code == 503 and "error" in response.get_json()


@pytest.mark.parametrize(
    "instances",
    [
        [{"x0": 1, "x1": 2, "x2": 3}, {"x2": 0.5, "x0": -1.0, "x1": 2.25}],
        [[1, 2, 3], [-1.0, 2.25, 0.5]],
        [{"x0": 1, "x1": 2, "x2": 3}, [-1.0, 2.25, 0.5]],
    ],
    ids=["dicts", "lists", "mixed"],
)
@pytest.mark.parametrize("path", ["/v1/models/wide:predict", "/v1/models/wide/versions/1:predict"])
def test_predict(client, bundles, instances, path):
    response = client.post(path, json={"instances": instances})
    assert response.status_code == 200, response.get_json()
    expected = bundles["wide"].predict([[1, 2, 3], [-1.0, 2.25, 0.5]])
    predictions = response.get_json()["predictions"]
    if all(type(row) is list for row in instances):  # TF Serving's row form: lists back
        actual = predictions
    else:
        assert [sorted(p) for p in predictions] == [["y0", "y1"]] * 2
        actual = [[p["y0"], p["y1"]] for p in predictions]
    np.testing.assert_allclose(actual, expected, rtol=1e-6)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"inputs": {"x0": [1, -1.0], "x1": [2, 2.25], "x2": [3, 0.5]}}, "named"),
        ({"inputs": [[1, 2, 3], [-1.0, 2.25, 0.5]]}, "tensor"),
    ],
    ids=["named-columns", "tensor"],
)
def test_predict_columns_answers_outputs(client, bundles, body, expected):
    """TF Serving's columnar form: {"inputs": ...} answered {"outputs": ...} in the same shape."""
    response = client.post("/v1/models/wide:predict", json=body)
    assert response.status_code == 200, response.get_json()
    outputs = response.get_json()["outputs"]
    y = bundles["wide"].predict([[1, 2, 3], [-1.0, 2.25, 0.5]])
    if expected == "named":
        assert list(outputs) == ["y0", "y1"]
        outputs = np.column_stack([outputs["y0"], outputs["y1"]])
    np.testing.assert_allclose(outputs, y, rtol=1e-6)


def test_predict_empty_columns(client):
    response = client.post("/v1/models/linear:predict", json={"inputs": {"x0": [], "x1": []}})
    assert (response.status_code, response.get_json()) == (200, {"outputs": {"y0": []}})


def test_predict_values_keep_float32_short_repr(client):
    response = client.post("/v1/models/linear:predict", json={"instances": [[0.1, 0.0]]})
    assert response.get_data() == b'{"predictions":[[0.1]]}'


def test_predict_empty_instances(client):
    response = client.post("/v1/models/linear:predict", json={"instances": []})
    assert (response.status_code, response.get_json()) == (200, {"predictions": []})


def test_a_cards_sensitivity_indices_are_shown_with_the_model(tmp_path):
    """``surrogate train`` stores Sobol' indices in the card; KServe's model endpoint shows
    the card, so a client sees which inputs matter without reading the bundle."""
    indices = {"y0": {"S1": {"x0": 0.7, "x1": 0.2}, "ST": {"x0": 0.8, "x1": 0.3}}}
    make_bundle(tmp_path, "ranked", card_overrides={"sensitivity": {"n": 4096,
                                                                    "indices": indices}})
    client = create_app(Settings(model_repository=tmp_path)).test_client()
    shown = client.get("/v1/models/ranked").get_json()
    assert shown["sensitivity"] == {"n": 4096, "indices": indices} and shown["ready"] is True


@st.composite
def _near_plain_bodies(draw):
    """V1 bodies for the 2-input ``linear`` model (x0, x1): the usual one, named or as lists,
    with each of its parts changed now and then."""

    either = functools.partial(usual_or, draw)

    rows = draw(st.lists(st.lists(st.floats(-10, 10), min_size=2, max_size=2), min_size=1,
                         max_size=4))
    if not draw(st.integers(0, 2)):  # a third of the time, a value is something else
        rows[draw(st.integers(0, len(rows) - 1))][draw(st.integers(0, 1))] = draw(CLIENT_VALUES)
    named = draw(st.booleans())
    instances = [{"x0": a, "x1": b} if named else [a, b] for a, b in rows]
    if not draw(st.integers(0, 4)):
        instances[-1] = draw(st.sampled_from(
            [{"x0": 1.0}, {"x0": 1.0, "x1": 2.0, "x2": 3.0}, [1.0], [1.0, 2.0, 3.0], 1.0, None,
             {"x0": 1.0, "x1": 2.0} if not named else [1.0, 2.0]]))
    body: dict = {either("instances", "inputs"): either(instances, [], instances[0], None,
                                                        instances * 20)}
    if not draw(st.integers(0, 9)):
        body["parameters"] = draw(st.sampled_from([{}, {"return_std": False}, None,
                                                   {"domain_policy": "reject"}]))
    return body


@QUICK_DECODE_SETTINGS
@given(body=_near_plain_bodies())
def test_the_quick_decode_of_the_usual_body_agrees_with_the_full_one(app, body):
    from service.codec_v1 import decode_request, plain_body

    model = app.extensions["surrogate.registry"].get("linear", None)
    check_quick_decode(lambda b: plain_body(model, b), lambda b: decode_request(model, b), body)


def test_the_usual_body_takes_the_quick_decode(app):
    from service.codec_v1 import NAMED_ROWS, ROWS, plain_body

    model = app.extensions["surrogate.registry"].get("linear", None)
    named = plain_body(model, {"instances": [{"x1": 2, "x0": 1.5}, {"x0": -3e38, "x1": 0.0}]})
    assert named is not None and named.layout == NAMED_ROWS and named.outputs == ("outputs",)
    assert named.inputs.tolist() == [[1.5, 2.0], [np.float32(-3e38), 0.0]]
    assert plain_body(model, {"instances": [[1.5, 2]]}).layout == ROWS
    for refused in ([{"x0": 1, "x1": True}], [{"x0": 1, "x1": 4e38}], [{"x0": 1}], [[1, 2, 3]],
                    [{"x0": 1, "x1": "2"}], [[0.5, 2**64]], [[1, 2], {"x0": 1, "x1": 2}], []):
        assert plain_body(model, {"instances": refused}) is None
    assert plain_body(model, {"instances": [[1, 2]], "parameters": {}}) is None
