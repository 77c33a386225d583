"""Broken bundles under a real gunicorn: every worker starts, serves the good models and lists
each broken one with its reason; a new version that fails to load leaves the old one serving.

tests/service/test_broken_bundles.py covers every kind of damage in one process with Flask's
test client; here, a few of them in one repository, asked of each worker over loopback.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import requests

from tests.bundles import make_bundle
from tests.e2e.server import from_every_worker, running_server, wait_for

ONE_ROW = {"inputs": [{"name": "inputs", "shape": [1, 2], "datatype": "FP32",
                       "data": [1.0, 2.0]}]}
NEW_WEIGHTS = ([[10.0], [10.0]], [0.0])


def _corrupt_onnx(path):
    (path / "model.onnx").write_bytes(b"\x08\x01garbage")


def _bad_json(path):
    (path / "model.json").write_text('{"inputs": [', encoding="utf-8")


def _no_card(path):
    (path / "model.json").unlink()


# name: (damage after writing, card overrides, the reason the index must give)
BROKEN = {
    "corrupt_onnx": (_corrupt_onnx, {"onnx": {"sha256": None}}, "onnxruntime cannot load"),
    "bad_json": (_bad_json, {}, "model.json is not valid JSON"),
    "no_card": (_no_card, {}, "model.json is missing"),
    "inputs_mismatch": (None, {"inputs": [{"name": f"x{i}"} for i in range(3)]},
                        "the card's 3 inputs"),
}


@pytest.fixture(scope="module")
def broken_repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("broken-models")
    good = {"linear": make_bundle(repo, "linear"),
            "wide": make_bundle(repo, "wide", n_inputs=3, n_outputs=2),
            "evolving": make_bundle(repo, "evolving")}
    for name, (damage, overrides, _) in BROKEN.items():
        bundle = make_bundle(repo, name, card_overrides=overrides)
        if damage is not None:
            damage(bundle.path)
    return repo, good


@pytest.fixture(scope="module")
def broken_server(broken_repo, tmp_path_factory):
    repo, _ = broken_repo
    with running_server(repo, tmp_path_factory.mktemp("broken-server") / "server.log",
                        workers=2) as server:
        yield server


def _index(response: requests.Response) -> dict[tuple[str, str], tuple[str, str]]:
    assert response.status_code == 200, response.text
    return {(r["name"], r["version"]): (r["state"], r["reason"]) for r in response.json()}


def test_every_worker_serves_the_good_models_and_lists_the_broken_ones(broken_server,
                                                                       broken_repo):
    _, good = broken_repo
    for pid, response in from_every_worker(broken_server, "POST",
                                           "/v2/repository/index").items():
        index = _index(response)
        for name in good:
            assert index[(name, "1")] == ("READY", ""), (pid, index)
        for name, (_, _, reason) in BROKEN.items():
            state, why = index[(name, "1")]
            assert state == "UNAVAILABLE" and reason in why, (pid, name, why)

    for pid, response in from_every_worker(broken_server, "GET", "/v2/health/ready").items():
        assert response.status_code == 200, (pid, response.text)
    for name, (_, _, reason) in BROKEN.items():
        for path in (f"/v2/models/{name}/ready", f"/v2/models/{name}/versions/1/ready"):
            response = requests.get(broken_server.url + path, timeout=30)
            assert response.status_code == 503, (path, response.text)
        response = requests.post(f"{broken_server.url}/v2/models/{name}/infer", json=ONE_ROW,
                                 timeout=30)
        assert response.status_code == 503 and reason in response.json()["error"], response.text
    wide = {"inputs": [{"name": "inputs", "shape": [1, 3], "datatype": "FP32",
                        "data": [1.0, 2.0, 3.0]}]}
    for name, body in (("linear", ONE_ROW), ("wide", wide)):
        for pid, response in from_every_worker(broken_server, "POST", f"/v2/models/{name}/infer",
                                               json=body).items():
            assert response.status_code == 200, (pid, response.text)
            expected = good[name].predict(body["inputs"][0]["data"]).ravel()
            np.testing.assert_allclose(response.json()["outputs"][0]["data"], expected)


def test_a_new_version_that_fails_to_load_leaves_the_old_one_serving(broken_server,
                                                                       broken_repo):
    repo, good = broken_repo
    make_bundle(repo, "evolving", version=2, weights=NEW_WEIGHTS,
                card_overrides={"onnx": {"sha256": None}})
    _corrupt_onnx(repo / "evolving" / "2")
    response = requests.post(f"{broken_server.url}/v2/repository/models/evolving/load",
                             timeout=30)
    assert response.status_code == 200, response.text
    (v1, v2) = response.json()["versions"]
    assert v1 == {"version": "1", "state": "READY", "reason": ""}
    assert v2["state"] == "UNAVAILABLE" and "onnxruntime cannot load" in v2["reason"]

    # The worker that took the call published it; each other one applies it from the control
    # directory and logs the failure under its own pid.
    failed = re.compile(r"\[(\d+)\] service\.registry: model evolving version 2 is UNAVAILABLE")
    workers = broken_server.workers()
    wait_for(lambda: workers <= {int(pid) for pid in failed.findall(broken_server.log())},
             f"every worker of {workers} tried version 2", server=broken_server)

    expected = good["evolving"].predict([1.0, 2.0]).ravel().tolist()
    for pid, answer in from_every_worker(broken_server, "POST", "/v2/models/evolving/infer",
                                         json=ONE_ROW).items():
        assert answer.status_code == 200, (pid, answer.text)
        body = answer.json()
        assert (body["model_version"], body["outputs"][0]["data"]) == ("1", expected), pid
    for pid, answer in from_every_worker(broken_server, "GET",
                                         "/v2/models/evolving/versions/2/ready").items():
        assert answer.status_code == 503, (pid, answer.text)
    for pid, answer in from_every_worker(broken_server, "POST", "/v2/repository/index").items():
        state, reason = _index(answer)[("evolving", "2")]
        assert state == "UNAVAILABLE" and "onnxruntime cannot load" in reason, pid
