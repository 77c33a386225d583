"""KServe's own Python client, ``kserve.InferenceRESTClient``, V1 and V2, against the service
under gunicorn over real sockets.

KServe's SDK pins pandas below 3 and protobuf below 7, under what this project's environment
holds (onnx needs the newer protobuf), so it gets a virtual environment of its own, built from
the package index once per run (about a minute); the client runs there as a subprocess.
"""

from __future__ import annotations

import json
import subprocess
import venv
from pathlib import Path

import numpy as np
import pytest

CLIENT = Path(__file__).parent / "clients" / "kserve_client.py"
KSERVE = "kserve>=0.14,<1"


@pytest.fixture(scope="module")
def kserve_python(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("kserve-venv")
    venv.create(root, with_pip=True)
    python = root / "bin" / "python"
    done = subprocess.run([str(python), "-m", "pip", "install", "--quiet",
                           "--disable-pip-version-check", KSERVE],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"pip install {KSERVE} failed:\n{done.stderr[-3000:]}"
    return python


@pytest.mark.parametrize("model", ["wide", "linear"])
def test_kserve_client_v1_and_v2(kserve_python, server, models, model):
    bundle = models[f"{model}/latest"]
    rows = (np.arange(4 * len(bundle.input_names), dtype=np.float64)
            .reshape(4, -1) / 4.0).tolist()
    done = subprocess.run(
        [str(kserve_python), str(CLIENT), server.url, model, json.dumps(rows),
         ",".join(bundle.input_names)],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    expected = bundle.predict(np.asarray(rows, dtype=np.float32))
    assert found["v1_live"] is True and found["v1_ready"] is True
    assert found["v1_missing"] == 404
    predicted = np.array([[p[name] for name in bundle.output_names]
                          for p in found["v1_predict"]["predictions"]])
    np.testing.assert_allclose(predicted, expected, rtol=1e-5, atol=1e-6)
    assert found["v2_live"] is True and found["v2_ready"] is True
    for kind in ("json", "binary"):
        outputs = np.array(found[f"v2_infer_{kind}"]["outputs"])
        np.testing.assert_allclose(outputs, expected, rtol=1e-5, atol=1e-6)

