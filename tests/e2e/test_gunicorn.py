"""The service under a real gunicorn: V1, metrics across workers, request ids, errors, the CLI."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.server import SURROGATE, clean_env, free_port, running_server, wait_for

ROOT = Path(__file__).resolve().parents[2]
MODULE = "python:service.gunicorn_config"
INFER_WIDE = {"inputs": [{"name": "inputs", "shape": [2, 3], "datatype": "FP32",
                          "data": [1, 2, 3, 4, 5, 6]}]}


def _sample(exposition: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return None


def test_v1_predict_named_and_positional_instances(server, models):
    bundle = models["wide/1"]
    instances = [{"x0": 1.0, "x1": 2.0, "x2": 3.0}, [4.0, 5.0, 6.0]]
    response = requests.post(f"{server.url}/v1/models/wide:predict",
                             json={"instances": instances}, timeout=30)
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert [sorted(p) for p in predictions] == [bundle.output_names] * 2
    expected = bundle.predict([[1, 2, 3], [4, 5, 6]])
    got = [[p[name] for name in bundle.output_names] for p in predictions]
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_metrics_add_up_across_workers_and_restarts(model_repo, tmp_path):
    # Workers are recycled after 3 requests, so 12 requests are served by at least 3 processes,
    # some dead by the time of the scrape; only multiprocess mode can count all of them.
    n = 12
    env = {"SURROGATE_MAX_REQUESTS": "3", "SURROGATE_MAX_REQUESTS_JITTER": "0"}
    with running_server(model_repo, tmp_path / "server.log", env=env) as server:
        for _ in range(n):
            # A new connection each time (no Session), so any worker may take it.
            response = requests.post(f"{server.url}/v2/models/wide/infer", json=INFER_WIDE,
                                     timeout=30)
            assert response.status_code == 200, response.text
        labels = {"model": "wide", "version": "1"}

        def counted() -> str | None:  # live workers write their requests within 0.25 s
            scrape = requests.get(f"{server.url}/metrics", timeout=30).text
            done = _sample(scrape, "surrogate_requests_total", protocol="v2", **labels) == n
            return scrape if done else None

        scrape = wait_for(counted, f"{n} requests in the metrics", seconds=10)
        log = server.log()
    pids = set(re.findall(r'"POST /v2/models/wide/infer HTTP/1.1" 200 .* pid=<(\d+)>', log))
    assert len(pids) >= 3, log
    assert _sample(scrape, "surrogate_rows_predicted_total", **labels) == 2 * n, scrape


def test_connections_opened_at_once_are_spread_over_the_workers(model_repo, tmp_path):
    """By default every worker listens on a socket of its own (SO_REUSEPORT) and the kernel
    spreads connections over them. With one shared socket, the worker that is awake accepts a
    burst of connections alone and keeps them (keep-alive): a client's 16 connections were all
    on one worker of two in about a quarter of the bursts measured."""
    with running_server(model_repo, tmp_path / "server.log") as server:
        # A worker opens its socket once its models are loaded: wait for the second one.
        wait_for(lambda: server.log().count("2 of 2 models ready") == 2, "both workers loaded")
        bursts = []
        for _ in range(3):
            sessions = [requests.Session() for _ in range(16)]
            for session in sessions:  # every connection open before any request is answered
                session.get(f"{server.url}/v2/health/live", timeout=30).raise_for_status()
            ids = []
            for session in sessions:
                response = session.post(f"{server.url}/v2/models/wide/infer", json=INFER_WIDE,
                                        timeout=30)
                assert response.status_code == 200, response.text
                ids.append(response.headers["X-Request-ID"])
                session.close()
            bursts.append(ids)
        workers = server.workers()
        served_by = wait_for(lambda: (lambda seen: seen if all(
            i in seen for ids in bursts for i in ids) else None)(server.served_by()),
            "every request in the access log")
    assert len(workers) == 2
    for ids in bursts:
        assert {served_by[i] for i in ids} == workers


def test_sigterm_stops_cleanly_and_removes_the_metrics_directory(model_repo, tmp_path):
    with running_server(model_repo, tmp_path / "server.log", workers=1) as server:
        announced = re.search(r"Prometheus multiprocess directory: (\S+)", server.log())
        assert announced, server.log()
        directory = Path(announced.group(1))
        assert directory.is_dir()
    # running_server asserted exit code 0 after SIGTERM
    assert not directory.exists()


def test_failed_boot_exits_nonzero_and_removes_the_metrics_directory(tmp_path):
    command = [sys.executable, "-m", "gunicorn", "-c", MODULE, "--bind",
               f"127.0.0.1:{free_port()}", "service:create_app()"]
    env = clean_env(SURROGATE_MODEL_REPOSITORY=str(tmp_path / "missing"))
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    announced = re.search(r"Prometheus multiprocess directory: (\S+)", result.stderr)
    assert announced, result.stderr
    assert not Path(announced.group(1)).exists()


@pytest.mark.parametrize("path", ["/v2/health/ready", "/v2/models/no_such_model"])
def test_request_id_is_echoed(server, path):
    response = requests.get(f"{server.url}{path}", headers={"X-Request-ID": "e2e-42"}, timeout=30)
    assert response.headers["X-Request-ID"] == "e2e-42"


def test_request_id_is_generated_when_absent(server):
    ids = [requests.get(f"{server.url}/v2/health/live", timeout=30).headers["X-Request-ID"]
           for _ in range(2)]
    assert all(ids) and ids[0] != ids[1]


def _tensor(shape, data):
    return {"inputs": [{"name": "inputs", "shape": shape, "datatype": "FP32", "data": data}]}


INFER = "/v2/models/linear/infer"
BAD_REQUESTS = [
    pytest.param("POST", "/v2/models/no_such_model/infer", {"json": _tensor([1, 2], [1, 2])}, 404,
                 id="unknown-model"),
    pytest.param("POST", "/v2/models/linear/versions/9/infer", {"json": _tensor([1, 2], [1, 2])},
                 404, id="unknown-version"),
    pytest.param("POST", INFER, {"data": b"{not json", "headers": {"Content-Type":
                                                                   "application/json"}},
                 400, id="malformed-json"),
    pytest.param("POST", INFER, {"json": _tensor([1, 3], [1, 2, 3])}, 400, id="wrong-width"),
    pytest.param("POST", INFER, {"json": _tensor([2, 2], [1, 2, 3])}, 400, id="data-vs-shape"),
    pytest.param("POST", INFER, {"data": b"{}", "headers": {"Inference-Header-Content-Length":
                                                            "999"}},
                 400, id="binary-header-past-body"),
    pytest.param("POST", INFER, {"data": b"1,2", "headers": {"Content-Type": "text/csv"}}, 415,
                 id="unsupported-content-type"),
    pytest.param("POST", "/v1/models/linear:predict", {"json": {"instances": [{"x0": 1.0}]}},
                 400, id="v1-missing-input"),
    pytest.param("GET", "/v2/no/such/route", {}, 404, id="unknown-route"),
    pytest.param("DELETE", "/v2/health/ready", {}, 405, id="wrong-method"),
]


@pytest.mark.parametrize(("method", "path", "kwargs", "status"), BAD_REQUESTS)
def test_bad_request_gets_json_error_and_server_stays_ready(server, method, path, kwargs, status):
    response = requests.request(method, f"{server.url}{path}", timeout=30, **kwargs)
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert isinstance(error, str) and error
    assert requests.get(f"{server.url}/v2/health/ready", timeout=30).status_code == 200


@pytest.mark.skipif("CUDAExecutionProvider" in onnxruntime.get_available_providers(),
                    reason="this onnxruntime has CUDA, so --device cuda is allowed to start")
@pytest.mark.parametrize(("args", "env"), [
    (["--device", "cuda"], {}),
    ([], {"SURROGATE_DEVICE": "cuda"}),
    (["--config", "{config}"], {}),
], ids=["flag", "environment", "config-file"])
def test_serve_refuses_cuda_without_its_provider(model_repo, tmp_path, args, env):
    config = tmp_path / "serve.toml"
    config.write_text('device = "cuda"\n', encoding="utf-8")
    command = [str(SURROGATE), "serve", "--repo", str(model_repo),
               "--bind", f"127.0.0.1:{free_port()}", *(a.format(config=config) for a in args)]
    result = subprocess.run(command, env=clean_env(**env), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    # one line, and nothing else: gunicorn never started
    assert len(lines) == 1 and "CUDAExecutionProvider" in lines[0], result.stderr
    assert result.stdout == ""


def test_serve_rejects_a_missing_repository(tmp_path):
    missing = tmp_path / "no_models_here"
    result = subprocess.run([str(SURROGATE), "serve", "--repo", str(missing)], env=clean_env(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert str(missing) in result.stderr and "does not exist" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("args", "env", "status", "message"), [
    ([], {"SURROGATE_TIMEOUT": "soon"}, 2, "SURROGATE_TIMEOUT: expected an integer, got 'soon'"),
    ([], {"SURROGATE_MAX_REQUESTS": "-5"}, 2, "max_requests must be >= 0"),
    ([], {"SURROGATE_DOMAIN_POLICY": "clip"}, 2, "domain_policy must be one of warn, reject"),
    ([], {"SURROGATE_GRACEFUL_TIMEOUT": "0"}, 2, "graceful_timeout must be > 0"),
], ids=["timeout", "max-requests", "domain-policy", "graceful-timeout"])
def test_serve_checks_every_setting_before_gunicorn_starts(model_repo, args, env, status,
                                                          message):
    # gunicorn's config module and every worker read the same settings: serve refuses what they
    # would, in one line, and gunicorn never starts.
    command = [str(SURROGATE), "serve", "--repo", str(model_repo), *args]
    result = subprocess.run(command, env=clean_env(**env), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == status, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert "Booting worker" not in result.stderr and "Listening at" not in result.stderr


@pytest.mark.parametrize(("module", "forbidden"), [
    ("training.cli.serve", ("sklearn", "scipy", "onnx")),
    # The gunicorn master imports it: prometheus_client must wait for PROMETHEUS_MULTIPROC_DIR.
    ("service.gunicorn_config", ("prometheus_client", "flask", "onnxruntime", "numpy")),
])
def test_import_stays_light(module, forbidden):
    code = f"import sys, {module}; print(*[m for m in {forbidden!r} if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", code], env=clean_env(), capture_output=True,
                            text=True, timeout=60, check=True)
    assert result.stdout.strip() == ""


DEPLOY_FILE = str(ROOT / "deploy" / "gunicorn.conf.py")
WORKER = "service.gunicorn_worker.JsonErrorWorker"


@pytest.mark.parametrize(("config", "env", "expected"), [
    (MODULE, {}, {"bind": "['127.0.0.1:8000']", "worker_class": WORKER,
                  "preload_app": "False", "max_requests": "0", "control_socket_disable": "True",
                  "limit_request_line": "8190"}),
    (MODULE, {"PORT": "9123"}, {"bind": "['0.0.0.0:9123']"}),
    (MODULE, {"PORT": "9123", "SURROGATE_BIND": "127.0.0.1:9124"}, {"bind": "['127.0.0.1:9124']"}),
    (MODULE, {"SURROGATE_WORKERS": "3", "SURROGATE_THREADS": "2", "SURROGATE_MAX_REQUESTS": "500"},
     {"workers": "3", "threads": "2", "max_requests": "500", "max_requests_jitter": "50"}),
    (DEPLOY_FILE, {"PORT": "9123"}, {"bind": "['0.0.0.0:9123']", "worker_class": WORKER}),
], ids=["defaults", "port", "bind-beats-port", "sizes", "deploy-file"])
def test_gunicorn_takes_its_settings_from_the_environment(model_repo, config, env, expected):
    # --print-config prints gunicorn's resolved settings (after loading the app once) and exits.
    command = [sys.executable, "-m", "gunicorn", "-c", config, "--print-config",
               "service:create_app()"]
    result = subprocess.run(command, env=clean_env(SURROGATE_MODEL_REPOSITORY=str(model_repo),
                                                   SURROGATE_WARMUP="false", **env),
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    printed = (line.split(" = ", 1) for line in result.stdout.splitlines() if " = " in line)
    settings = {key.strip(): value.strip() for key, value in printed}
    assert {key: settings[key] for key in expected} == expected
