"""The least any service of the bench model can do per request: plain WSGI, orjson, onnxruntime.

No web framework, no validation, no metrics, no request ids, no domain check, no error
handling: read the body, decode it, run the session, encode the answer. Under the same gunicorn
settings as every other system, it shows what is left of the stack's ceiling once a request
really runs a model, so our service's cost can be told from the server's and the machine's.
It is not a service anyone should run. Run as ``gunicorn 'bench.peers.bare:create_app()'``
with ``BENCH_ONNX`` naming the model file.
"""

from __future__ import annotations

import os

import numpy as np
import onnxruntime as ort
import orjson

_READY = b"ready"


def create_app():
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(os.environ["BENCH_ONNX"], options,
                                   providers=["CPUExecutionProvider"])

    def app(environ, start_response):
        if environ["REQUEST_METHOD"] != "POST":  # the bench's readiness probe
            start_response("200 OK", [("Content-Type", "text/plain"),
                                      ("Content-Length", str(len(_READY)))])
            return [_READY]
        body = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
        tensor = orjson.loads(body)["inputs"][0]
        x = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
        (y,) = session.run(["outputs"], {"inputs": x})
        answer = orjson.dumps({"outputs": [{"name": "outputs", "datatype": "FP32",
                                            "shape": list(y.shape), "data": y.ravel()}]},
                              option=orjson.OPT_SERIALIZE_NUMPY)
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(answer)))])
        return [answer]

    return app
