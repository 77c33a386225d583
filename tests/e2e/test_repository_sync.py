"""Repository load and unload under gunicorn reach every worker, not just the one called."""

from __future__ import annotations

import os
import signal
import time

import pytest
import requests

from tests.bundles import make_bundle
from tests.e2e.server import from_every_worker, running_server, wait_for

DEADLINE_SECONDS = 10.0
# Fresh connections spread over the workers; 40 in a row all agreeing leaves a lagging worker
# of two a 2**-40 chance to go unseen.
STREAK = 40


def _fresh_get(url: str) -> requests.Response:
    with requests.Session() as session:
        return session.get(url, headers={"Connection": "close"}, timeout=30)


def _wait_for_every_worker(url: str, agrees) -> None:
    """Poll until ``STREAK`` consecutive fresh-connection answers satisfy ``agrees``."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    streak, last = 0, None
    while streak < STREAK:
        if time.monotonic() > deadline:
            pytest.fail(f"workers disagree after {DEADLINE_SECONDS} s; last: "
                        f"{last.status_code} {last.text}")
        last = _fresh_get(url)
        streak = streak + 1 if agrees(last) else 0


def test_load_and_unload_reach_every_worker(tmp_path):
    repo = tmp_path / "models"
    make_bundle(repo, "linear", version=1)
    with running_server(repo, tmp_path / "server.log", workers=2) as server:
        url = f"{server.url}/v2/models/linear"
        _wait_for_every_worker(url, lambda r: r.json().get("versions") == ["1"])

        make_bundle(repo, "linear", version=2, weights=([[10.0], [10.0]], [0.0]))
        response = requests.post(f"{server.url}/v2/repository/models/linear/load", timeout=30)
        assert response.status_code == 200, response.text
        _wait_for_every_worker(url, lambda r: r.json().get("versions") == ["1", "2"])
        infer = {"inputs": [{"name": "inputs", "shape": [1, 2], "datatype": "FP32",
                             "data": [1.0, 1.0]}]}
        answer = requests.post(f"{url}/infer", json=infer, timeout=30).json()
        assert (answer["model_version"], answer["outputs"][0]["data"]) == ("2", [20.0])

        response = requests.post(f"{server.url}/v2/repository/models/linear/unload", timeout=30)
        assert response.status_code == 200, response.text
        _wait_for_every_worker(url, lambda r: r.status_code == 503)


def test_a_replaced_worker_serves_the_versions_its_siblings_serve(tmp_path):
    repo = tmp_path / "models"
    make_bundle(repo, "linear", version=1)
    with running_server(repo, tmp_path / "server.log", workers=2) as server:
        assert "recorded at start: 1 models" in server.log()
        # Both workers up (and loaded) before the disk changes.
        assert all(r.json()["versions"] == ["1"]
                   for r in from_every_worker(server, "GET", "/v2/models/linear").values())
        make_bundle(repo, "linear", version=2, weights=([[10.0], [10.0]], [0.0]))
        make_bundle(repo, "fresh", version=1)
        killed = min(server.workers())
        os.kill(killed, signal.SIGKILL)
        wait_for(lambda: killed not in server.workers() and len(server.workers()) == 2,
                 "a replacement worker", server=server)

        answers = from_every_worker(server, "GET", "/v2/models/linear")
        assert {pid: r.json()["versions"] for pid, r in answers.items()} == {
            pid: ["1"] for pid in server.workers()}
        assert all(r.status_code == 404
                   for r in from_every_worker(server, "GET", "/v2/models/fresh").values())

        response = requests.post(f"{server.url}/v2/repository/models/fresh/load", timeout=30)
        assert response.status_code == 200, response.text
        _wait_for_every_worker(f"{server.url}/v2/models/fresh",
                               lambda r: r.status_code == 200 and r.json()["versions"] == ["1"])
