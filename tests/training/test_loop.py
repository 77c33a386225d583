"""`surrogate loop` for real: the simulator is a process of its own (bench.simulators.analytic,
borehole), failing on 10% of the rows by NaN outputs, missing rows and a non-zero exit; the loop
is interrupted with SIGINT in the middle of a round and resumed; and the simulator calls run on a
real Dask cluster. Training is kept small (two members of 8 units, a second each): these tests
are about the loop, not the fit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from service.repository import scan
from tests.loops import BOREHOLE, INPUTS, check_finished_state, loop_args, rows, write_bounds, xs
from training.cli import main


@pytest.fixture
def bounds(tmp_path) -> Path:
    return write_bounds(tmp_path / "borehole.bounds.toml")


def test_a_simulator_failing_on_a_tenth_of_the_rows_loses_none_of_the_others(
        bounds, tmp_path, monkeypatch):  # fmt: skip
    monkeypatch.setenv("SIM_FAIL_FRACTION", "0.1")
    result = CliRunner().invoke(main, loop_args(bounds, tmp_path, "--initial", "30", "--batch",
                                            "15", "--budget", "60"))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "done: the budget of 60 simulations is spent" in result.output
    table, failed = check_finished_state(tmp_path / "loop", 60)
    assert failed and any("not a finite number" in r["reason"] for r in failed)
    assert any("missing from the simulator's output" in r["reason"] for r in failed)
    assert all("status 3" in r["reason"] for r in failed if "missing" in r["reason"])
    models = scan(tmp_path / "repo")
    state = json.loads((tmp_path / "loop" / "loop.json").read_text())
    assert [r["simulations"] for r in state["rounds"]] == [30, 45, 60]
    versions = [r["version"] for r in state["rounds"]]
    assert [ref.version for ref in models["bh"]] == versions == [1, 2, 3]


def _start(args: list[str], **env) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "from training.cli import main; main()",
                             *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, **env})  # fmt: skip


def test_ctrl_c_in_the_middle_of_a_round_keeps_every_finished_row_and_resumes(bounds, tmp_path):
    directory = tmp_path / "loop"
    args = loop_args(bounds, tmp_path, "--initial", "24", "--batch", "8", "--budget", "40",
                 "--chunk", "2")  # fmt: skip
    process = _start(args, SIM_SLEEP="0.15")
    seen: list[tuple] = []
    deadline = time.monotonic() + 120
    while len(seen) < 6:
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
        if (directory / "table.csv").exists():
            seen = xs(rows(directory / "table.csv"))
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "carry on with `surrogate loop --resume" in stderr
    kept = xs(rows(directory / "table.csv"))
    assert set(seen) <= set(kept) and len(kept) < 24
    assert len(kept) + len(rows(directory / "pending.csv")) == 24  # nothing lost, none twice
    resumed = _start(["loop", "--resume", str(directory)])
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert "done: the budget of 40 simulations is spent" in out
    table, _ = check_finished_state(directory, 40)
    assert set(kept) <= set(xs(table))


def test_a_simulator_that_never_works_is_one_line_naming_the_failures(bounds, tmp_path):
    args = loop_args(bounds, tmp_path, "--initial", "8", "--batch", "4", "--budget", "12",
                     simulator="no-such-simulator --flag")
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert "only 0 simulations succeeded" in result.output and "failed.csv" in result.output
    failed = rows(tmp_path / "loop" / "failed.csv")
    assert len(failed) == 8
    assert "cannot run the simulator 'no-such-simulator'" in failed[0]["reason"]
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 1 and "already holds a loop" in again.output
    assert "--resume" in again.output


def test_missing_options_and_outputs_that_are_inputs_are_usage_errors(bounds, tmp_path):
    result = CliRunner().invoke(main, ["loop", "--name", "bh"])
    assert result.exit_code == 2 and "missing --simulator, --bounds" in result.output
    args = loop_args(bounds, tmp_path, "--initial", "8", "--batch", "4", "--budget", "12",
                 "--outputs", "Q,rw")  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "--outputs names inputs: rw" in result.output
    assert not (tmp_path / "loop").exists()


def test_surrogate_simulate_is_a_simulator_and_names_a_missing_column(tmp_path):
    source, target = tmp_path / "in.csv", tmp_path / "out.csv"
    X = np.array([[spec[2] for spec in BOREHOLE.inputs], [spec[3] for spec in BOREHOLE.inputs]])
    lines = [",".join(INPUTS), *(",".join(map(repr, row)) for row in X.tolist())]
    source.write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(main, ["simulate", "--function", "borehole", str(source)],
                                env={"SURROGATE_OUTPUT": str(target)})  # fmt: skip
    assert result.exit_code == 0, result.output
    written = rows(target)
    assert xs(written) == [tuple(r) for r in X.tolist()]
    np.testing.assert_allclose([float(r["Q"]) for r in written], BOREHOLE(X).ravel())
    source.write_text("rw,r\n0.1,200\n")
    result = CliRunner().invoke(main, ["simulate", "--output", str(target), str(source)])
    assert result.exit_code == 1 and "no column 'Tu', 'Hu', 'Tl', 'Hl', 'L', 'Kw'" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_resume_keeps_the_loops_settings(tmp_path):
    result = CliRunner().invoke(main, ["loop", "--resume", str(tmp_path), "--batch", "5"])
    assert result.exit_code == 2 and "only --budget can change (--batch given)" in result.output
    result = CliRunner().invoke(main, ["loop", "--resume", str(tmp_path / "none")])
    assert result.exit_code == 1 and "holds no loop" in result.output


def test_a_second_loop_on_the_same_directory_is_refused(bounds, tmp_path):
    import fcntl

    args = loop_args(bounds, tmp_path, "--initial", "8", "--batch", "4", "--budget", "12")
    first = CliRunner().invoke(main, args + ["--simulator", "false"])  # creates the directory
    assert first.exit_code == 1
    with open(tmp_path / "loop" / ".lock", "w") as lock:  # as a running loop holds it
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = CliRunner().invoke(main, ["loop", "--resume", str(tmp_path / "loop")])
    assert result.exit_code == 1 and "another surrogate loop is running in" in result.output


def test_ctrl_c_while_the_state_is_written_waits_until_every_file_agrees(tmp_path, monkeypatch):
    """A Ctrl-C between the table and the pending list would leave rows in both."""
    import training.loop as loop_module

    settings = loop_module.LoopSettings(
        name="bh", repo=str(tmp_path / "repo"), simulator="true", initial=4, batch=2, budget=8,
        factors=[{"name": "a", "low": 0.0, "high": 1.0}, {"name": "b", "low": 0.0, "high": 1.0}])
    loop = loop_module.Loop.create(tmp_path / "loop", settings)
    loop.pending = np.array([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]])
    loop.save()
    written = []
    real = loop_module.replace_whole

    def interrupted_after_the_first_file(path, data):
        real(path, data)
        written.append(Path(path).name)
        if len(written) == 1:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(loop_module, "replace_whole", interrupted_after_the_first_file)
    result = loop_module.ChunkResult(x=np.array([[0.1, 0.2]]), y=np.array([[1.0]]),
                                     outputs=["y"], failed_x=np.empty((0, 2)), reasons=[])
    with pytest.raises(KeyboardInterrupt):
        loop._keep(result, loop.pending[1:])
    assert written == ["table.csv", "failed.csv", "pending.csv", "loop.json"]
    resumed = loop_module.Loop.resume(tmp_path / "loop")
    assert [(r["a"], r["b"]) for r in rows(tmp_path / "loop" / "table.csv")] == [("0.1", "0.2")]
    assert len(rows(tmp_path / "loop" / "pending.csv")) == 2 == len(resumed.pending)
