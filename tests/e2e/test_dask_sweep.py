"""A sweep through ``--scheduler`` on a real Dask cluster: one scheduler, two worker processes."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from training.cli import main

distributed = pytest.importorskip("distributed")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[tuple[str, set[int]]]:
    """The scheduler address and the pids of two single-threaded workers (no nanny)."""
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
        with distributed.Client(address, timeout=30) as client:
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


def test_sweep_runs_its_tasks_on_the_dask_workers(cluster, tmp_path):
    address, worker_pids = cluster
    rng = np.random.default_rng(1)
    a, b = rng.uniform(0, 1, 200), rng.uniform(1, 2, 200)
    table = tmp_path / "runs.csv"
    pd.DataFrame({"a": a, "b": b, "y": np.sin(4 * a) * b}).to_csv(table, index=False)
    report = tmp_path / "report"
    result = CliRunner().invoke(main, [
        "sweep", "--data", str(table), "--inputs", "a,b", "--outputs", "y", "--name", "m",
        "--repo", str(tmp_path / "repo"), "--activations", "tanh,relu,elu", "--hidden", "8;8,8",
        "--seeds", "2", "--epochs", "60", "--solver", "adam", "--scheduler", address,
        "--report", str(report), "--no-progress"])
    assert result.exit_code == 0, result.output

    board = json.loads((report / "leaderboard.json").read_text())
    assert len(board["rows"]) == 6 and len(board["runs"]) == 12
    assert all(run["status"] == "ok" for run in board["runs"])
    assert {run["pid"] for run in board["runs"]} == worker_pids
    assert all(run["worker"].startswith("tcp://127.0.0.1:") for run in board["runs"])
    assert (tmp_path / "repo" / "m" / "1" / "model.json").is_file()
