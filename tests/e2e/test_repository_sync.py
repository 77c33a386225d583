"""Repository load and unload under gunicorn reach every worker, not just the one called."""

from __future__ import annotations

import time

import pytest
import requests

from tests.bundles import make_bundle
from tests.e2e.server import running_server

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
