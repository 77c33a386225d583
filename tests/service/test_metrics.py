"""Prometheus metrics: counters move with requests; multiprocess mode aggregates workers."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, Histogram
from prometheus_client.utils import floatToGoString

from service import metrics
from tests.bundles import make_bundle
from tests.v2 import json_request

GOOD = json_request([[1, 2], [3, 4], [5, 6]], [3, 2])
BAD = json_request([1, 2, 3], [1, 3])


def sample(name: str, **labels: str) -> float:
    metrics.flush()  # requests are recorded in the background
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
    """Two processes (as two gunicorn workers) count into one exposition; the first exits
    without a scrape, so its request reaches the files by the flush at exit."""
    metrics_dir = tmp_path / "prom"
    metrics_dir.mkdir()
    script = textwrap.dedent(
        f"""
        import sys
        from service import Settings, create_app
        client = create_app(Settings(model_repository={str(repo)!r})).test_client()
        body = {GOOD!r}
        assert client.post("/v2/models/linear/infer", json=body).status_code == 200
        if sys.argv[1] == "scrape":
            print(client.get("/metrics").get_data(as_text=True))
        """
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    for then in ("exit", "scrape"):
        result = subprocess.run(
            [sys.executable, "-c", script, then], env=env, capture_output=True, text=True,
            check=True,
        )
    line = 'surrogate_requests_total{model="linear",protocol="v2",version="1"} 2.0'
    assert line in result.stdout


def test_recorded_requests_reach_the_histograms_as_observe_would():
    """Requests are summed per series before they are written: every bucket, sum and counter
    as one observe per request gives, bounds included (a value equal to a bound is in it)."""
    model = "flush-check"
    batch_rows = [0, 1, 1, 4, 5, 16, 17, 65536, 10**6, 3]
    reference = Histogram("reference_rows", "", registry=CollectorRegistry(),
                          buckets=metrics._BATCH_BUCKETS)
    for rows in batch_rows:
        with metrics.RequestTimer("v2") as timer:
            timer.model, timer.version, timer.rows = model, "7", rows
        reference.observe(rows)
    with pytest.raises(ValueError), metrics.RequestTimer("v2") as timer:  # a failed request
        timer.model, timer.version, timer.rows = model, "7", 99
        raise ValueError
    metrics.flush()
    assert sample("surrogate_requests_total", model=model, version="7", protocol="v2") == 11
    assert sample("surrogate_request_failures_total", model=model, version="7",
                  protocol="v2") == 1
    assert sample("surrogate_rows_predicted_total", model=model, version="7") == sum(batch_rows)
    for bound in [*metrics._BATCH_BUCKETS, float("inf")]:
        le = floatToGoString(bound)
        assert (sample("surrogate_batch_rows_bucket", model=model, le=le)
                == reference.collect()[0].samples[metrics._BATCH_BOUNDS.index(bound)].value), le
    assert sample("surrogate_batch_rows_sum", model=model) == sum(batch_rows)
    assert sample("surrogate_request_duration_seconds_count", model=model, protocol="v2") == 11
    seconds = sample("surrogate_request_duration_seconds_sum", model=model, protocol="v2")
    assert 0 < seconds < 1


def test_requests_are_written_in_the_background_without_a_scrape():
    model = "background-check"
    with metrics.RequestTimer("v1") as timer:
        timer.model, timer.version, timer.rows = model, "1", 3
    labels = {"model": model, "version": "1"}
    deadline = time.monotonic() + 20 * metrics.FLUSH_SECONDS
    while REGISTRY.get_sample_value("surrogate_rows_predicted_total", labels) != 3:
        assert time.monotonic() < deadline, "not written after 20 flush periods"
        time.sleep(metrics.FLUSH_SECONDS / 5)
