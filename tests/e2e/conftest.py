"""End-to-end fixtures: a model repository and one real gunicorn server per test module, and a
real Dask cluster (a scheduler and two worker processes) for the commands that use one.

A failing test gets the log of every server fixture it used as an extra section of its report.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.bundles import Bundle, make_bundle
from tests.e2e.server import Server, running_server


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Bundle]:
    """The served bundles by ``name/version`` and ``name/latest``, to compute expected answers."""
    root = tmp_path_factory.mktemp("models")
    bundles = {
        "linear/1": make_bundle(root, "linear", version=1),
        "linear/2": make_bundle(root, "linear", version=2, weights=([[0.5], [-2.0]], [3.0])),
        "wide/1": make_bundle(root, "wide", n_inputs=3, n_outputs=2),
    }
    bundles["linear/latest"] = bundles["linear/2"]
    bundles["wide/latest"] = bundles["wide/1"]
    return bundles


@pytest.fixture(scope="module")
def model_repo(models) -> Path:
    return models["linear/1"].path.parents[1]


@pytest.fixture(scope="module")
def server(model_repo, tmp_path_factory) -> Iterator[Server]:
    """One two-worker server for the whole test module."""
    with running_server(model_repo, tmp_path_factory.mktemp("server") / "server.log") as running:
        yield running


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:
        for value in getattr(item, "funcargs", {}).values():
            if isinstance(value, Server):
                report.sections.append((f"server log ({value.url})", value.log()))
    return report


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[tuple[str, set[int]]]:
    """The scheduler address and the pids of two single-threaded workers (no nanny)."""
    from distributed import Client

    log = (tmp_path_factory.mktemp("dask") / "dask.log").open("w")
    address = f"tcp://127.0.0.1:{_free_port()}"
    procs = [subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
         "--port", address.rsplit(":", 1)[1], "--no-dashboard"], stdout=log, stderr=log)]
    workers = [subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nworkers", "1",
         "--nthreads", "1", "--no-dashboard", "--no-nanny", "--host", "127.0.0.1"],
        stdout=log, stderr=log) for _ in range(2)]
    procs += workers
    try:
        with Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=60)
        yield address, {p.pid for p in workers}
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()


@pytest.fixture(scope="module")
def browser() -> Iterator:
    """A headless chromium (tests.e2e.browser), one per test module."""
    from tests.e2e.browser import chromium

    yield from chromium()
