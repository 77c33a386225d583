"""A sweep through ``--scheduler`` on a real Dask cluster: one scheduler, two worker processes
(the ``cluster`` fixture of conftest)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from click.testing import CliRunner

from training.cli import main


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
