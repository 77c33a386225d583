"""NVIDIA's own V2 client, tritonclient.http, against the service under gunicorn."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

# (model, version as tritonclient passes it: "" means the latest)
SERVED = [("linear", ""), ("linear", "1"), ("linear", "2"), ("wide", "")]


@pytest.fixture(scope="module")
def client(server):
    client = httpclient.InferenceServerClient(url=server.address, network_timeout=30.0)
    yield client
    client.close()


def _bundle(models, name, version):
    return models[f"{name}/{version or 'latest'}"]


def _rows(n_inputs: int) -> np.ndarray:
    """Five rows inside and outside the training range, some negative."""
    return (np.arange(5 * n_inputs, dtype=np.float32).reshape(5, n_inputs) - 4.0) / 4.0


def test_server_is_live_and_ready(client):
    assert client.is_server_live()
    assert client.is_server_ready()


@pytest.mark.parametrize(("name", "version"), SERVED)
def test_model_is_ready(client, name, version):
    assert client.is_model_ready(name, version)


@pytest.mark.parametrize(("name", "version"), [("no_such_model", ""), ("linear", "9")])
def test_unknown_model_or_version_is_not_ready(client, name, version):
    assert not client.is_model_ready(name, version)


@pytest.mark.parametrize(("name", "version"), SERVED)
def test_model_metadata(client, models, name, version):
    bundle = _bundle(models, name, version)
    n_inputs, n_outputs = bundle.weights.shape
    metadata = client.get_model_metadata(name, version)
    assert metadata["name"] == name
    assert sorted(metadata["versions"]) == (["1", "2"] if name == "linear" else ["1"])
    tensors = [(t["name"], t["datatype"], t["shape"])
               for t in metadata["inputs"] + metadata["outputs"]]
    assert tensors == [("inputs", "FP32", [-1, n_inputs]), ("outputs", "FP32", [-1, n_outputs])]


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize(("name", "version"), SERVED)
def test_infer_returns_the_linear_model(client, models, name, version, binary):
    bundle = _bundle(models, name, version)
    x = _rows(bundle.weights.shape[0])
    tensor = httpclient.InferInput("inputs", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    wanted = httpclient.InferRequestedOutput("outputs", binary_data=binary)
    result = client.infer(name, [tensor], model_version=version, outputs=[wanted])
    response = result.get_response()
    assert response["model_name"] == name
    assert response["model_version"] == str(bundle.card["version"])
    y = result.as_numpy("outputs")
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, x @ bundle.weights + bundle.bias, rtol=1e-6, atol=1e-6)


def test_infer_by_hand_computed_values(client):
    # linear version 2 is y = 0.5 x0 - 2 x1 + 3 (weights set in conftest)
    x = np.array([[0.0, 0.0], [2.0, 1.0], [-4.0, 0.5]], dtype=np.float32)
    tensor = httpclient.InferInput("inputs", [3, 2], "FP32")
    tensor.set_data_from_numpy(x, binary_data=True)
    y = client.infer("linear", [tensor]).as_numpy("outputs")
    np.testing.assert_array_equal(y, [[3.0], [2.0], [0.0]])


def test_infer_error_reaches_the_client(client, models):
    x = _rows(3)  # linear takes 2 inputs
    tensor = httpclient.InferInput("inputs", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=True)
    with pytest.raises(InferenceServerException) as caught:
        client.infer("linear", [tensor])
    assert caught.value.status() == "400"
    assert client.is_server_ready()
