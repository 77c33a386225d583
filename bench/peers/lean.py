"""The leanest Flask service of the same model: a V2 route, orjson, onnxruntime, nothing else.

No validation, no metrics, no request ids, no domain check: what a Flask + onnxruntime service
costs at the least, to tell our features' cost from the stack's. Run as
``gunicorn 'bench.peers.lean:create_app()'`` with ``BENCH_ONNX`` naming the model file.
"""

from __future__ import annotations

import os

import numpy as np
import onnxruntime as ort
import orjson
from flask import Flask, Response, request


def create_app() -> Flask:
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(os.environ["BENCH_ONNX"], options,
                                   providers=["CPUExecutionProvider"])
    app = Flask(__name__)

    @app.post("/v2/models/<name>/infer")
    def infer(name: str) -> Response:
        tensor = orjson.loads(request.get_data())["inputs"][0]
        x = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
        (y,) = session.run(["outputs"], {"inputs": x})
        body = {"model_name": name, "outputs": [
            {"name": "outputs", "datatype": "FP32", "shape": list(y.shape), "data": y.ravel()}]}
        return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY),
                        mimetype="application/json")

    @app.get("/v2/health/ready")
    def ready() -> str:
        return "ready"

    return app
