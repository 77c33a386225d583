"""Access control, CORS and the trust features against a real gunicorn server over loopback."""

from __future__ import annotations

import numpy as np
import pytest
import requests

from tests.bundles import make_bundle
from tests.e2e.server import running_server

KEY = "e2e-secret-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
OUTSIDE = [[0.5, 1.0, 3.0]]  # x2 above its training range [0, 2]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("security")
    bundle = make_bundle(tmp / "models", "trusted", n_inputs=3, n_outputs=2,
                         extra_outputs=("std",), jacobian=True)
    env = {
        "SURROGATE_API_KEY": f"other-key,{KEY}",
        "SURROGATE_CORS_ORIGINS": "https://app.example",
        "SURROGATE_DOMAIN_POLICY": "reject",
        "SURROGATE_REPOSITORY_CONTROL": "false",
    }
    with running_server(tmp / "models", tmp / "server.log", env=env) as running:
        yield running, bundle


def _infer(url, rows, headers=AUTH, **parameters):
    body = {
        "inputs": [{"name": "inputs", "shape": [len(rows), 3], "datatype": "FP32", "data": rows}],
        "outputs": [{"name": "outputs"}, {"name": "jacobian"}],
        "parameters": parameters,
    }
    return requests.post(f"{url}/v2/models/trusted/infer", json=body, headers=headers, timeout=10)


def test_keys_guard_the_models_and_probes_stay_open(server):
    running, _ = server
    assert requests.get(f"{running.url}/v2/health/ready", timeout=10).status_code == 200
    assert requests.get(f"{running.url}/metrics", timeout=10).status_code == 200
    denied = _infer(running.url, [[1, 1, 1]], headers={"Authorization": "Bearer wrong"})
    assert denied.status_code == 401 and denied.json() == {"error": "invalid API key"}
    assert requests.get(f"{running.url}/v1/models", timeout=10).status_code == 401
    assert requests.get(f"{running.url}/v1/models", headers=AUTH, timeout=10).status_code == 200


def test_repository_control_is_off(server):
    running, _ = server
    url = f"{running.url}/v2/repository/models/trusted/unload"
    assert requests.post(url, headers=AUTH, timeout=10).status_code == 403


def test_cors_preflight_and_response_headers(server):
    running, _ = server
    preflight = requests.options(
        f"{running.url}/v2/models/trusted/infer",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
        timeout=10,
    )
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://app.example"
    response = _infer(running.url, [[1, 1, 1]], headers={**AUTH, "Origin": "https://app.example"})
    assert response.headers["Access-Control-Allow-Origin"] == "https://app.example"


def test_jacobian_and_domain_policy_over_both_protocols(server):
    running, bundle = server
    response = _infer(running.url, [[1, 1, 1]])
    assert response.status_code == 200
    outputs = {o["name"]: np.reshape(o["data"], o["shape"]) for o in response.json()["outputs"]}
    np.testing.assert_allclose(outputs["jacobian"][0], bundle.weights.T)
    rejected = _infer(running.url, OUTSIDE)  # the server's policy is reject
    assert rejected.status_code == 422 and "input 'x2' = 3" in rejected.json()["error"]
    warned = _infer(running.url, OUTSIDE, domain_policy="warn")
    assert warned.json()["parameters"]["out_of_domain"] == [{"row": 0, "inputs": ["x2"]}]
    v1 = requests.post(
        f"{running.url}/v1/models/trusted:predict", headers=AUTH, timeout=10,
        json={"instances": OUTSIDE, "parameters": {"domain_policy": "warn", "return_std": True}},
    ).json()
    assert set(v1) == {"predictions", "std", "out_of_domain", "out_of_domain_rows"}
    metrics = requests.get(f"{running.url}/metrics", timeout=10).text
    assert 'surrogate_out_of_domain_rows_total{model="trusted",version="1"} 3.0' in metrics
