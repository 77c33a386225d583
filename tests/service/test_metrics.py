"""Prometheus metrics: counters move with requests; multiprocess mode aggregates workers."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from prometheus_client import REGISTRY

from tests.bundles import make_bundle
from tests.v2 import json_request

GOOD = json_request([[1, 2], [3, 4], [5, 6]], [3, 2])
BAD = json_request([1, 2, 3], [1, 3])


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize(
    ("path", "body", "protocol", "ok"),
    [
        ("/v2/models/linear/infer", GOOD, "v2", True),
        ("/v2/models/linear/infer", BAD, "v2", False),
        ("/v1/models/linear:predict", {"instances": [[1, 2], [3, 4], [5, 6]]}, "v1", True),
        ("/v1/models/linear:predict", {"instances": [[1]]}, "v1", False),
    ],
)
def test_counters_move_with_requests(client, path, body, protocol, ok):
    labels = {"model": "linear", "version": "1", "protocol": protocol}
    names = ("surrogate_requests_total", "surrogate_request_failures_total")
    before = [sample(n, **labels) for n in names]
    rows_before = sample("surrogate_rows_predicted_total", model="linear", version="1")
    latency_before = sample(
        "surrogate_request_duration_seconds_count", model="linear", protocol=protocol
    )

    client.post(path, json=body)

    after = [sample(n, **labels) for n in names]
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 0 if ok else 1]
    rows = sample("surrogate_rows_predicted_total", model="linear", version="1") - rows_before
    assert rows == (3 if ok else 0)
    latency = sample("surrogate_request_duration_seconds_count", model="linear", protocol=protocol)
    assert latency - latency_before == 1


def test_unknown_model_is_not_a_label(client):
    client.post("/v2/models/made-up/infer", json=GOOD)
    text = client.get("/metrics").get_data(as_text=True)
    assert "made-up" not in text
    assert 'surrogate_request_failures_total{model="",protocol="v2",version=""}' in text


def test_exposition_lists_every_metric(client):
    client.post("/v2/models/linear/infer", json=GOOD)
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    text = response.get_data(as_text=True)
    for name in (
        "surrogate_requests_total",
        "surrogate_request_failures_total",
        "surrogate_rows_predicted_total",
        "surrogate_request_duration_seconds_bucket",
        "surrogate_batch_rows_bucket",
        "surrogate_model_load_failures_total",
    ):
        assert name in text


def test_load_failures_are_counted(repo):
    from service import Settings, create_app

    broken = make_bundle(repo, "broken", card_overrides={"onnx": {"sha256": "0" * 64}})
    assert broken.path.exists()
    before = sample("surrogate_model_load_failures_total", model="broken")
    create_app(Settings(model_repository=repo))
    assert sample("surrogate_model_load_failures_total", model="broken") - before == 1


def test_multiprocess_mode_aggregates_processes(repo, tmp_path):
    """Two processes (as two gunicorn workers) count into one exposition."""
    metrics_dir = tmp_path / "prom"
    metrics_dir.mkdir()
    script = textwrap.dedent(
        f"""
        from service import Settings, create_app
        client = create_app(Settings(model_repository={str(repo)!r})).test_client()
        body = {GOOD!r}
        assert client.post("/v2/models/linear/infer", json=body).status_code == 200
        print(client.get("/metrics").get_data(as_text=True))
        """
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    for _ in range(2):
        result = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
        )
    line = 'surrogate_requests_total{model="linear",protocol="v2",version="1"} 2.0'
    assert line in result.stdout
