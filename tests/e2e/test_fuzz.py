"""Fuzz every operation of the served ``/openapi.json`` over loopback against real gunicorn.

A smaller run than the in-process one (tests/service/test_fuzz.py): what it adds is the real
HTTP stack (gunicorn's parser, two workers, the cross-worker repository sync). Afterwards the
server must be ready, serve the target model, have lost no worker and logged no traceback.
"""

from __future__ import annotations

import time

import psutil
import pytest
import requests

from tests.e2e.server import running_server
from tests.fuzzing import AUTH, FUZZ_KEY, fuzz_operation, fuzz_repository, operation_labels

MAX_EXAMPLES = 15
# Repository actions reach the other worker within a poll interval (0.5 s); generous here.
SYNC_SECONDS = 30.0


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    repo = fuzz_repository(tmp_path_factory.mktemp("fuzz-models"))
    env = {"SURROGATE_API_KEY": FUZZ_KEY, "SURROGATE_MAX_REQUEST_BYTES": "65536"}
    log = tmp_path_factory.mktemp("fuzz-server") / "server.log"
    with running_server(repo, log, workers=2, env=env) as server:
        workers = {child.pid for child in psutil.Process(server.process.pid).children()}
        yield server
        assert {c.pid for c in psutil.Process(server.process.pid).children()} == workers
        assert "Traceback" not in server.log() and "unhandled error" not in server.log()


@pytest.fixture(scope="module")
def api_schema(fuzz_server):
    import schemathesis

    return schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json")


@pytest.fixture(scope="module")
def counts():
    counts: dict[str, int] = {}
    yield counts
    print(f"\nschemathesis gunicorn fuzz: {sum(counts.values())} cases over {len(counts)} "
          "operations")


def _target_serves(url: str) -> bool:
    response = requests.post(f"{url}/v1/models/linear:predict", headers=AUTH, timeout=30,
                             json={"instances": [[0.5, 1.5]]})
    return response.status_code == 200 and response.json() == {"predictions": [[3.5]]}


@pytest.mark.parametrize("label", operation_labels())
def test_operation_survives_fuzzing_over_http(fuzz_server, api_schema, counts, label):
    counts[label] = fuzz_operation(api_schema, label, MAX_EXAMPLES, base_url=fuzz_server.url)
    assert counts[label] > 0
    url = fuzz_server.url
    assert requests.get(f"{url}/v2/health/ready", timeout=30).status_code == 200
    # The fuzzer may have unloaded the target model: load it back; every worker must serve it.
    load = requests.post(f"{url}/v2/repository/models/linear/load", headers=AUTH, timeout=30)
    assert load.status_code == 200, load.text
    deadline = time.monotonic() + SYNC_SECONDS
    while not all(_target_serves(url) for _ in range(4)):
        assert time.monotonic() < deadline, "linear not served by every worker after a load"
        time.sleep(0.1)
