"""`surrogate loop --scheduler`: the simulator calls run as tasks on a real Dask cluster (the
``cluster`` fixture of conftest: a scheduler and two worker processes)."""

from __future__ import annotations

import os

from click.testing import CliRunner

from tests.loops import SIMULATOR, check_finished_state, loop_args, write_bounds
from training.cli import main


def test_simulator_calls_run_on_the_dask_workers(cluster, tmp_path):
    address, workers = cluster
    bounds = write_bounds(tmp_path / "borehole.bounds.toml")
    log = tmp_path / "calls.log"  # the workers' simulators write it: it goes in the command
    result = CliRunner().invoke(main, loop_args(
        bounds, tmp_path, "--initial", "12", "--batch", "6", "--budget", "18", "--chunk", "3",
        "--scheduler", address, simulator=f"env SIM_LOG={log} {SIMULATOR}"))
    assert result.exit_code == 0, result.output
    assert f"on the Dask cluster at {address}" in result.output
    calls = [line.split() for line in log.read_text().splitlines()]
    assert len(calls) == 6 and sum(int(n) for _, n in calls) == 18
    assert {int(pid) for pid, _ in calls} <= workers and os.getpid() not in workers
    assert len({pid for pid, _ in calls}) == 2  # both workers took calls
    check_finished_state(tmp_path / "loop", 18)
