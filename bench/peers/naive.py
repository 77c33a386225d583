"""The naive way to serve a model: Flask plus a pickled scikit-learn pipeline.

``POST /predict`` takes ``{"instances": [[x1, ..., x8], ...]}`` and answers
``{"predictions": [...]}``, via ``request.get_json``, ``pipeline.predict`` and ``jsonify``.
Set up fairly: one BLAS thread per worker thread (threadpoolctl here, and the environment the
bench gives every server), else it measures thread oversubscription. Run as
``gunicorn 'bench.peers.naive:create_app()'`` with ``BENCH_PIPELINE`` naming the joblib file.
"""

from __future__ import annotations

import os

import joblib
import numpy as np
from flask import Flask, jsonify, request
from threadpoolctl import threadpool_limits


def create_app() -> Flask:
    threadpool_limits(1)
    pipeline = joblib.load(os.environ["BENCH_PIPELINE"])
    app = Flask(__name__)

    @app.post("/predict")
    def predict():
        rows = np.asarray(request.get_json()["instances"], dtype=np.float64)
        return jsonify({"predictions": pipeline.predict(rows).tolist()})

    @app.get("/v2/health/ready")
    def ready() -> str:
        return "ready"

    return app
