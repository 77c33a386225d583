"""The factory and cross-cutting behaviour: request ids, logging, import hygiene."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap

import pytest
from flask import request

from service import Settings, create_app


def test_request_id_is_echoed(client):
    response = client.get("/v2/health/live", headers={"X-Request-ID": "abc-123"})
    assert response.headers["X-Request-ID"] == "abc-123"


@pytest.mark.parametrize("incoming", [None, "", "two words", "x" * 200, "evil\\nline"])
def test_request_id_is_generated_when_missing_or_unsafe(client, incoming):
    headers = {} if incoming is None else {"X-Request-ID": incoming}
    rid = client.get("/v2/health/live", headers=headers).headers["X-Request-ID"]
    assert rid != incoming and len(rid) == 32 and rid.isalnum()


def test_access_log_line(client, caplog):
    with caplog.at_level(logging.INFO, logger="service.access"):
        client.get("/v2/models/linear", headers={"X-Request-ID": "rid-1"})
    (record,) = [r for r in caplog.records if r.name == "service.access"]
    assert '"GET /v2/models/linear" 200' in record.getMessage()
    assert (record.request_id, record.status, record.path) == ("rid-1", 200, "/v2/models/linear")


def test_access_log_can_be_turned_off(repo, caplog):
    client = create_app(Settings(model_repository=repo, access_log=False)).test_client()
    with caplog.at_level(logging.INFO, logger="service.access"):
        response = client.get("/v2/health/live")
    assert response.headers["X-Request-ID"]
    assert not [r for r in caplog.records if r.name == "service.access"]


@pytest.fixture
def restore_service_logger():
    """configure_logging changes process-wide logger state; put it back after the test."""
    logger = logging.getLogger("service")
    saved = logger.level, logger.propagate, list(logger.handlers)
    yield
    logger.setLevel(saved[0])
    logger.propagate = saved[1]
    logger.handlers[:] = saved[2]


def test_json_logs(repo, capsys, restore_service_logger):
    client = create_app(Settings(model_repository=repo, json_logs=True)).test_client()
    client.get("/v2/health/ready", headers={"X-Request-ID": "json-1"})
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    (access,) = [line for line in lines if line["logger"] == "service.access"]
    assert access["request_id"] == "json-1" and access["status"] == 200
    assert {"time", "level", "message", "pid"} <= set(access)
    assert any(line["logger"] == "service.registry" for line in lines)


def test_import_is_cheap_and_serving_never_loads_training_libraries(repo):
    """``import service`` does no work; a running app has no sklearn, scipy, onnx or training."""
    script = textwrap.dedent(
        f"""
        import sys
        import service
        heavy = {{"flask", "onnxruntime", "numpy", "prometheus_client"}} & set(sys.modules)
        assert not heavy, heavy
        app = service.create_app(service.Settings(model_repository={str(repo)!r}))
        app.test_client().get("/metrics")
        banned = ("sklearn", "scipy", "onnx", "training")
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in banned)
        assert not loaded, loaded
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True)


def test_inference_is_answered_by_the_front_end_and_the_rest_by_flask(app, client):
    """Infer and predict never enter Flask (service.frontend), compressed bodies included;
    every other path does."""
    import gzip

    entered_flask = []
    app.before_request(lambda: entered_flask.append(request.path))
    infer = {"inputs": [{"name": "inputs", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]}
    v2 = client.post("/v2/models/linear/infer", json=infer, headers={"X-Request-ID": "abc-1"})
    v1 = client.post("/v1/models/linear:predict", json={"instances": [[1, 2]]})
    missing = client.post("/v2/models/nope/infer", json=infer)
    assert (v2.status_code, v1.status_code, missing.status_code) == (200, 200, 404)
    assert v2.headers["X-Request-ID"] == "abc-1" and len(v1.headers["X-Request-ID"]) == 32
    assert missing.get_json() == {"error": "model 'nope' not found"}
    assert entered_flask == []
    zipped = client.post(
        "/v2/models/linear/infer", data=gzip.compress(json.dumps(infer).encode()),
        headers={"Content-Encoding": "gzip"},
    )
    assert zipped.get_json()["outputs"] == v2.get_json()["outputs"]
    client.get("/v2/models/linear")
    assert entered_flask == ["/v2/models/linear"]
