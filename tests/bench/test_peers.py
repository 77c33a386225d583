"""The bench's in-process peers answer the bench's requests with the model's own predictions.

A peer that answered wrong, or cheaply by skipping the model, would make every ratio against it
meaningless; the bench's smoke request checks the status only.
"""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from werkzeug.test import Client

from bench.peers import bare, lean
from tests.bundles import make_bundle


@pytest.fixture()
def bundle(tmp_path, monkeypatch):
    made = make_bundle(tmp_path, "m", n_inputs=3, n_outputs=2)
    monkeypatch.setenv("BENCH_ONNX", str(made.path / "model.onnx"))
    return made


@pytest.mark.parametrize("peer", [bare, lean], ids=["bare", "lean"])
@pytest.mark.parametrize("rows", [1, 1000])
def test_peer_answers_the_models_predictions(bundle, peer, rows):
    x = np.random.default_rng(rows).uniform(-2, 2, (rows, 3))
    body = orjson.dumps({"inputs": [{"name": "inputs", "shape": [rows, 3], "datatype": "FP32",
                                     "data": x.ravel().tolist()}]})
    client = Client(peer.create_app())
    answer = client.post("/v2/models/m/infer", data=body,
                         headers={"Content-Type": "application/json"})
    assert answer.status_code == 200
    (out,) = orjson.loads(answer.data)["outputs"]
    assert out["shape"] == [rows, 2]
    np.testing.assert_allclose(np.reshape(out["data"], (rows, 2)), bundle.predict(x), rtol=1e-6)
    assert client.get("/v2/health/ready").status_code == 200
